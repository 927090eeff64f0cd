"""Cloze questions from unlabelled paragraphs (bertdeploy.data.cloze)."""

from __future__ import annotations

from bertdeploy.data.cloze import cloze_records, ngram_counts

PARAGRAPHS = [
    "梵語是印度的古典語言。1786年，威廉·瓊斯在加爾各答發表演說，認為希臘語與梵語出自同一語言。"
    "在歐洲，梵語的學術研究由德國學者開創。天城文自19世紀晚期成為梵語的標準書寫系統。",
    "香港早期的商業中心是中環。潮汕人多在九龍東定居，至今仍有「潮州商會」等組織。"
    "九龍東的人口在1990年超過50萬人，商業中心也隨之東移。",
    "北魏與劉宋以淮河為界。劉裕死後，北魏攻下河南三鎮，學術研究一度停頓。",
]


def test_every_answer_is_at_its_offset_and_unique_in_its_paragraph():
    records = cloze_records(PARAGRAPHS, per_paragraph=3, seed=1)
    assert len(records) >= 6
    for r in records:
        (text,), (start,) = r["answers"]["text"], r["answers"]["answer_start"]
        assert r["context"][start : start + len(text)] == text
        assert r["context"].count(text) == 1
        assert r["question"].endswith("？") and text not in r["question"]
        assert any(w in r["question"] for w in ("什麼", "何時", "多少"))
    assert len({r["id"] for r in records}) == len(records)


def test_question_words_follow_the_answer_kind():
    for r in cloze_records(PARAGRAPHS, per_paragraph=4, seed=3):
        text = r["answers"]["text"][0]
        if any(c.isdigit() for c in text) and any(u in text for u in ("年", "月", "日", "世紀")):
            assert "何時" in r["question"]
        elif any(c.isdigit() for c in text):
            assert "多少" in r["question"]


def test_deterministic_for_a_seed_and_different_across_seeds():
    assert cloze_records(PARAGRAPHS, 3, seed=7) == cloze_records(PARAGRAPHS, 3, seed=7)
    runs = {str(cloze_records(PARAGRAPHS, 3, seed=s)) for s in range(6)}
    assert len(runs) > 1


def test_per_paragraph_caps_each_paragraph():
    records = cloze_records(PARAGRAPHS, per_paragraph=1, seed=0)
    assert [r["context"] for r in records] == PARAGRAPHS
    assert cloze_records(PARAGRAPHS, per_paragraph=0) == []


def test_cjk_gaps_are_word_like_runs_that_recur():
    counts = ngram_counts(PARAGRAPHS)
    assert counts["學術研究"] == 2 and counts["商業中心"] == 2
    records = cloze_records(PARAGRAPHS, per_paragraph=4, seed=5)
    gaps = [r["answers"]["text"][0] for r in records if "「什麼」" not in r["question"]]  # quoted text: any length
    cjk = [g for g in gaps if all("\u4e00" <= c <= "\u9fff" for c in g)]
    assert cjk and all(counts[g] >= 2 for g in cjk)  # a run of characters seen elsewhere in the corpus


def test_a_paragraph_without_a_long_sentence_makes_nothing():
    assert cloze_records(["短句。", ""], per_paragraph=3) == []


def test_rounds_over_the_sentences_make_more_distinct_questions():
    one = cloze_records(PARAGRAPHS, per_paragraph=20, seed=2)
    more = cloze_records(PARAGRAPHS, per_paragraph=20, seed=2, per_sentence=3)
    assert more[: len(one)] != [] and len(more) > len(one)
    assert one == cloze_records(PARAGRAPHS, per_paragraph=20, seed=2, per_sentence=1)  # one round: as before
    pairs = [(r["id"].rsplit("-", 1)[0], r["answers"]["text"][0], r["question"]) for r in more]
    assert len(set(pairs)) == len(pairs)  # no gap asked twice in a paragraph
    for r in more:
        (text,), (start,) = r["answers"]["text"], r["answers"]["answer_start"]
        assert r["context"][start : start + len(text)] == text


def test_context_chars_cuts_whole_sentences_around_the_answer():
    records = cloze_records(PARAGRAPHS, per_paragraph=4, seed=4, context_chars=30)
    whole = cloze_records(PARAGRAPHS, per_paragraph=4, seed=4)
    assert [r["question"] for r in records] == [r["question"] for r in whole]  # only the contexts change
    shorter = 0
    for r, w in zip(records, whole, strict=True):
        (text,), (start,) = r["answers"]["text"], r["answers"]["answer_start"]
        assert r["context"][start : start + len(text)] == text and r["context"] in w["context"]
        assert r["context"][-1] in "。！？；!?;" and (w["context"].startswith(r["context"]) or w["context"][
            w["context"].index(r["context"]) - 1] in "。！？；!?;")  # fmt: skip
        shorter += len(r["context"]) < len(w["context"])
    assert shorter >= len(records) // 2
    long_sentence = [r for r in records if len(r["context"]) > 30]  # the answer's own sentence is always kept
    assert all(r["context"].count("。") == 1 for r in long_sentence)


def _drcd_like(root, n_train=6):
    import json

    root.mkdir()
    for split, start in (("train", 0), ("validation", 1), ("test", 2)):
        rows = []
        for i in range(start, start + (n_train if split == "train" else 1)):
            context = PARAGRAPHS[i % len(PARAGRAPHS)]
            rows.append({"id": f"{split}-{i}", "question": "哪一年？", "context": context,
                         "answers": {"text": [context[:2]], "answer_start": [0]}})  # fmt: skip
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return root


def test_the_data_folder_adds_cloze_questions_to_train_only(tmp_path):
    import json

    from bertdeploy.data import DataSpec, load_data
    from bertdeploy.data.cloze import write_cloze_data

    src = _drcd_like(tmp_path / "src")
    done = write_cloze_data(str(src), str(tmp_path / "out"), per_paragraph=2, seed=3)
    assert done.paragraphs == 3 and 4 <= done.cloze <= 6  # up to 2 a paragraph: where a sentence has a phrase
    assert done.questions == {"train": 6 + done.cloze, "validation": 1, "test": 1}
    data = load_data(DataSpec(str(tmp_path / "out"), task="question-answering"))
    assert {k: len(v["id"]) for k, v in data.splits.items()} == done.questions
    ids = data.splits["train"]["id"]
    assert sum(str(i).startswith("cloze-") for i in ids) == done.cloze and ids != sorted(ids, key=str)  # shuffled
    assert data.splits["validation"]["id"] == ["validation-1"]
    info = json.loads((tmp_path / "out" / "cloze.json").read_text())
    assert info["cloze_only"] is False and info["per_sentence"] == 1 and info["context_chars"] == 0
    assert info["format"] == "bertdeploy-cloze/1" and info["per_paragraph"] == 2 and info["seed"] == 3


def test_cli_writes_refuses_and_replaces_only_its_own(tmp_path):
    import json

    from click.testing import CliRunner

    from bertdeploy.cli import cli

    src = _drcd_like(tmp_path / "src")
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["data", "cloze", str(src), "-o", str(out), "--per-paragraph", "1"])
    assert r.exit_code == 0, r.output
    assert "3 cloze questions from 3 training paragraphs" in " ".join(r.output.split())
    r = CliRunner().invoke(cli, ["data", "cloze", str(src), "-o", str(out)])
    assert r.exit_code == 2 and "already exists" in r.output
    r = CliRunner().invoke(cli, ["data", "cloze", str(src), "-o", str(out), "--overwrite", "--per-paragraph", "2"])
    assert r.exit_code == 0 and "from 3 training paragraphs (train 1" in " ".join(r.output.split())
    assert json.loads((out / "cloze.json").read_text())["per_paragraph"] == 2
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    r = CliRunner().invoke(cli, ["data", "cloze", str(src), "-o", str(tmp_path / "mine"), "--overwrite"])
    assert r.exit_code == 2 and "refusing to replace" in r.output
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    r = CliRunner().invoke(cli, ["data", "cloze", str(src), "-o", str(tmp_path / "z"), "--per-paragraph", "0"])
    assert r.exit_code == 2 and "--per-paragraph must be >= 1" in r.output and not (tmp_path / "z").exists()
    r = CliRunner().invoke(cli, ["data", "cloze", str(src), "-o", str(tmp_path / "z"), "--context-chars", "-1"])
    assert r.exit_code == 2 and "--context-chars must be >= 0" in r.output and not (tmp_path / "z").exists()
    args = ["--only", "--per-paragraph", "9", "--per-sentence", "3", "--context-chars", "40"]
    r = CliRunner().invoke(cli, ["data", "cloze", str(src), "-o", str(tmp_path / "only"), *args])
    assert r.exit_code == 0, r.output
    train = [json.loads(line) for line in (tmp_path / "only" / "train.jsonl").read_text().splitlines()]
    assert train and all(t["id"].startswith("cloze-") and len(t["context"]) <= 40 for t in train)
    assert len(train) > 3  # more than one a paragraph
    info = json.loads((tmp_path / "only" / "cloze.json").read_text())
    assert info["cloze_only"] and info["per_sentence"] == 3 and info["context_chars"] == 40


def test_english_gaps_are_whole_words(tiny_qa_dir):
    from bertdeploy.data import DataSpec, load_data

    contexts = load_data(DataSpec(str(tiny_qa_dir))).splits["train"]["context"]
    records = cloze_records(contexts, per_paragraph=1, seed=0)
    assert records
    for r in records:
        (text,), (start,) = r["answers"]["text"], r["answers"]["answer_start"]
        context = r["context"]
        assert context[start : start + len(text)] == text and 1 <= len(text.split()) <= 3
        assert (start == 0 or context[start - 1] == " ") and context[start + len(text) :][:1] in ("", " ")
