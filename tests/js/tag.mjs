// Tag tokens with @huggingface/transformers's token-classification pipeline, loading a bertdeploy bundle folder as
// it is. Usage: node tag.mjs BUNDLE DTYPE TEXTS.json AGGREGATION
// Prints, per text, the pipeline's list as JSON on stdout (every label kept: ignore_labels []), with the keys it
// set and no others, so that the test sees what transformers.js returns for start / end.
import { bundlePipeline } from "./bundle.mjs";

const { pipe, texts, rest } = await bundlePipeline(
  "token-classification",
  "node tag.mjs BUNDLE DTYPE TEXTS.json AGGREGATION",
  4,
);
const results = await pipe(texts, { ignore_labels: [], aggregation_strategy: rest[0] });
const keys = (r) => Object.fromEntries(Object.keys(r).map((k) => [k, r[k] === undefined ? "undefined" : r[k]]));
process.stdout.write(JSON.stringify(results.map((list) => list.map(keys))) + "\n");
