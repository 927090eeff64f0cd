// Tag tokens with @huggingface/transformers's token-classification pipeline, loading a bertdeploy bundle folder as
// it is. Usage: node tag.mjs BUNDLE DTYPE TEXTS.json AGGREGATION
// Prints, per text, the pipeline's list as JSON on stdout (every label kept: ignore_labels []), with each key it
// set, so that the test sees what transformers.js returns for start / end.
import { readFileSync } from "node:fs";
import path from "node:path";
import { env, pipeline } from "@huggingface/transformers";

const [bundle, dtype, textsFile, aggregation] = process.argv.slice(2);
if (!bundle || !dtype || !textsFile || !aggregation) {
  console.error("usage: node tag.mjs BUNDLE DTYPE TEXTS.json AGGREGATION");
  process.exit(2);
}
const folder = path.resolve(bundle);
env.allowRemoteModels = false;
env.localModelPath = path.dirname(folder) + path.sep;
const texts = JSON.parse(readFileSync(textsFile, "utf8"));
const tag = await pipeline("token-classification", path.basename(folder), { dtype, device: "cpu" });
const results = await tag(texts, { ignore_labels: [], aggregation_strategy: aggregation });
const keys = (r) => Object.fromEntries(Object.keys(r).map((k) => [k, r[k] === undefined ? "undefined" : r[k]]));
process.stdout.write(JSON.stringify(results.map((list) => list.map(keys))) + "\n");
