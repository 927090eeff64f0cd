// Classify texts with @huggingface/transformers, loading a bertdeploy bundle folder as it is.
// Usage: node classify.mjs BUNDLE DTYPE TEXTS.json [--one-by-one]
// Prints {"labels": [...], "scores": [...], "input_ids": [[...], ...]} as JSON on stdout. The texts go through the
// pipeline in one call (padded together), or one call per text with --one-by-one; input_ids are the tokenizer's
// ids of each text alone, truncated as the pipeline truncates.
import { bundlePipeline } from "./bundle.mjs";

const { pipe: classify, texts, rest } = await bundlePipeline(
  "text-classification",
  "node classify.mjs BUNDLE DTYPE TEXTS.json [--one-by-one]",
  3,
);
const mode = rest[0];

const results = [];
if (mode === "--one-by-one") {
  for (const text of texts) results.push(...(await classify([text], { top_k: 1 })));
} else {
  results.push(...(await classify(texts, { top_k: 1 })));
}
const best = results.map((r) => (Array.isArray(r) ? r[0] : r));
const inputIds = texts.map((text) => Array.from(classify.tokenizer(text, { truncation: true }).input_ids.data, Number));
process.stdout.write(
  JSON.stringify({ labels: best.map((r) => r.label), scores: best.map((r) => r.score), input_ids: inputIds }) + "\n",
);
