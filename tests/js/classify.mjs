// Classify texts with @huggingface/transformers loading a bertdeploy bundle folder as it is.
// Usage: node classify.mjs BUNDLE DTYPE TEXTS.json  ->  prints [{label, score}, ...] as JSON on stdout
import { readFileSync } from "node:fs";
import path from "node:path";
import { env, pipeline } from "@huggingface/transformers";

const [bundle, dtype, textsFile] = process.argv.slice(2);
if (!bundle || !dtype || !textsFile) {
  console.error("usage: node classify.mjs BUNDLE DTYPE TEXTS.json");
  process.exit(2);
}
const folder = path.resolve(bundle);
env.allowRemoteModels = false;
env.localModelPath = path.dirname(folder) + path.sep;
const texts = JSON.parse(readFileSync(textsFile, "utf8"));
const classify = await pipeline("text-classification", path.basename(folder), { dtype, device: "cpu" });
const out = [];
if (process.env.ONE_BY_ONE) { for (const t of texts) out.push(...(await classify([t], { top_k: 1 }))); } else out.push(...(await classify(texts, { top_k: 1 })));
process.stdout.write(JSON.stringify(out.map((r) => (Array.isArray(r) ? r[0] : r))) + "\n");
