// What the scripts share: their arguments (BUNDLE DTYPE TEXTS.json ...) and a transformers.js pipeline over the
// bertdeploy bundle folder as it is (local files only).
import { readFileSync } from "node:fs";
import path from "node:path";
import { env, pipeline } from "@huggingface/transformers";

// Returns { pipe, texts, rest }: the pipeline of TASK, the texts of TEXTS.json and the arguments after it; exits
// with USAGE unless `required` arguments are given.
export async function bundlePipeline(task, usage, required) {
  const args = process.argv.slice(2);
  if (args.length < required || args.slice(0, required).some((a) => !a)) {
    console.error(`usage: ${usage}`);
    process.exit(2);
  }
  const [bundle, dtype, textsFile, ...rest] = args;
  const folder = path.resolve(bundle);
  env.allowRemoteModels = false;
  env.localModelPath = path.dirname(folder) + path.sep;
  const texts = JSON.parse(readFileSync(textsFile, "utf8"));
  const pipe = await pipeline(task, path.basename(folder), { dtype, device: "cpu" });
  return { pipe, texts, rest };
}
