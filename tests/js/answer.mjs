// Answer questions with @huggingface/transformers's question-answering pipeline, loading a bertdeploy bundle folder
// as it is. Usage: node answer.mjs BUNDLE DTYPE RECORDS.json TOP_K
// RECORDS.json holds [{question, context}, ...]; prints, per record, the pipeline's answer (top_k 1: an object,
// else a list) as JSON on stdout, with the keys it set and no others.
import { bundlePipeline } from "./bundle.mjs";

const { pipe, texts: records, rest } = await bundlePipeline(
  "question-answering",
  "node answer.mjs BUNDLE DTYPE RECORDS.json TOP_K",
  4,
);
const topK = Number(rest[0]);
const out = [];
for (const { question, context } of records) {
  out.push(await pipe(question, context, { top_k: topK }));
}
process.stdout.write(JSON.stringify(out) + "\n");
