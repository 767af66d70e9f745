//! Loader behaviour on real and broken files: every error names the file and the line.

use interference::data::{
    generate_synthetic, read_text_corpus, CoNllUReader, IobReader, PartOfSpeech, SyntheticSpec, TaggedSentence,
};
use interference::{Error, Lang};
use std::path::{Path, PathBuf};

/// Writes `bytes` to a file `name` in `dir` and returns its path.
fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Asserts that `err` is a parse error whose message names the file, `line` and `needle`.
fn assert_parse_error(err: Error, path: &Path, line: usize, needle: &str) {
    let shown = err.to_string();
    assert!(matches!(err, Error::Parse { line: l, .. } if l == line), "wrong variant or line: {shown}");
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(shown.contains(&format!("{name}:{line}: ")), "file and line missing: {shown}");
    assert!(shown.contains(needle), "{needle:?} missing: {shown}");
}

/// Asserts that `err` is an empty-file error naming the file.
fn assert_empty_file(err: Error, path: &Path) {
    let shown = err.to_string();
    assert!(matches!(err, Error::EmptyFile { .. }), "{shown}");
    assert!(shown.contains(path.file_name().unwrap().to_str().unwrap()), "{shown}");
}

fn en() -> Lang {
    Lang::new("en").unwrap()
}

fn sentence(tokens: &[&str], tags: &[&str]) -> TaggedSentence {
    TaggedSentence {
        tokens: tokens.iter().map(|t| t.to_string()).collect(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
    }
}

const WORD: &str = "_\t_\t_\t_\t_\t_\t_\t_";

#[test]
fn text_reads_sentences() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "en.txt", "\u{feff}One.\r\n\r\n  Two words. \nthree\n".as_bytes());
    let corpus = read_text_corpus(&path, en()).unwrap();
    assert_eq!(corpus.sentences, ["One.", "Two words.", "three"]);
}

#[test]
fn text_invalid_utf8_names_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "bad-utf8.txt", b"fine\nalso fine\nbroken \xc3\x28 here\n");
    assert_parse_error(read_text_corpus(&path, en()).unwrap_err(), &path, 3, "invalid UTF-8");
}

#[test]
fn text_control_character_names_line_and_code() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "nul.txt", b"fine\twith tab\nnul \0 here\n");
    assert_parse_error(read_text_corpus(&path, en()).unwrap_err(), &path, 2, "U+0000");
}

#[test]
fn text_empty_and_whitespace_only_files_are_empty() {
    let dir = tempfile::tempdir().unwrap();
    let empty = write(&dir, "empty.txt", b"");
    assert_empty_file(read_text_corpus(&empty, en()).unwrap_err(), &empty);
    let blank = write(&dir, "blank.txt", b"  \n\t\r\n\n");
    assert_empty_file(read_text_corpus(&blank, en()).unwrap_err(), &blank);
}

#[test]
fn missing_files_are_io_errors_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-file.txt");
    let errors = [
        read_text_corpus(&path, en()).unwrap_err(),
        CoNllUReader::read(&path).unwrap_err(),
        IobReader::read(&path).unwrap_err(),
    ];
    for err in errors {
        let shown = err.to_string();
        assert!(matches!(err, Error::Io { .. }), "{shown}");
        assert!(shown.contains("no-such-file.txt"), "{shown}");
    }
}

#[test]
fn conllu_skips_comments_multiword_tokens_and_empty_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "# sent_id = 1\n# text = Don't go.\n1-2\tDon't\t{WORD}\n1\tDo\tdo\tAUX\t_\t_\t0\troot\t_\t_\n\
         2\tn't\tnot\tPART\t_\t_\t1\tadvmod\t_\t_\n2.1\tgo\t{WORD}\n3\tgo\tgo\tVERB\t_\t_\t1\txcomp\t_\t_\n\n\n\
         # sent_id = 2\n1\tHi\thi\tINTJ\t_\t_\t0\troot\t_\t_"
    );
    let path = write(&dir, "ok.conllu", text.as_bytes());
    let sentences = CoNllUReader::read(&path).unwrap();
    assert_eq!(sentences, [sentence(&["Do", "n't", "go"], &["AUX", "PART", "VERB"]), sentence(&["Hi"], &["INTJ"])]);
}

#[test]
fn conllu_wrong_column_count_names_line_and_count() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "columns.conllu", b"# c\n1\tDo\tdo\tAUX\t_\t_\t0\troot\t_\t_\n2\tgo\tgo\tVERB\n");
    assert_parse_error(CoNllUReader::read(&path).unwrap_err(), &path, 3, "found 4");
}

#[test]
fn conllu_bad_id_names_line_and_id() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "id.conllu", format!("1\tDo\t{WORD}\n\nx7\tgo\t{WORD}\n").as_bytes());
    assert_parse_error(CoNllUReader::read(&path).unwrap_err(), &path, 3, "invalid ID \"x7\"");
}

#[test]
fn conllu_empty_form_names_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "form.conllu", b"1\t\tdo\tAUX\t_\t_\t0\troot\t_\t_\n");
    assert_parse_error(CoNllUReader::read(&path).unwrap_err(), &path, 1, "empty FORM");
}

#[test]
fn conllu_invalid_utf8_and_control_characters_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "utf8.conllu", b"# ok\n1\tD\xffo\tdo\tAUX\t_\t_\t0\troot\t_\t_\n");
    assert_parse_error(CoNllUReader::read(&path).unwrap_err(), &path, 2, "invalid UTF-8");
    let path = write(&dir, "ctrl.conllu", b"# ok\n\n1\tD\x1bo\tdo\tAUX\t_\t_\t0\troot\t_\t_\n");
    assert_parse_error(CoNllUReader::read(&path).unwrap_err(), &path, 3, "U+001B");
}

#[test]
fn conllu_without_sentences_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let comments = write(&dir, "comments.conllu", b"# only\n# comments\n\n");
    assert_empty_file(CoNllUReader::read(&comments).unwrap_err(), &comments);
    let empty = write(&dir, "empty.conllu", b"");
    assert_empty_file(CoNllUReader::read(&empty).unwrap_err(), &empty);
}

#[test]
fn iob_reads_sentences() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "ok.tsv", b"en:Nairobi\tB-LOC\r\nis\tO\r\n\r\n \nKenya\tB-LOC\nRepublic\tI-LOC");
    let sentences = IobReader::read(&path).unwrap();
    assert_eq!(
        sentences,
        [sentence(&["en:Nairobi", "is"], &["B-LOC", "O"]), sentence(&["Kenya", "Republic"], &["B-LOC", "I-LOC"])]
    );
}

#[test]
fn iob_bad_tag_names_line_and_tag() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "tag.tsv", b"a\tO\n\nb\tB-\n");
    assert_parse_error(IobReader::read(&path).unwrap_err(), &path, 3, "invalid IOB2 tag \"B-\"");
    let path = write(&dir, "tag2.tsv", b"a\tLOC\n");
    assert_parse_error(IobReader::read(&path).unwrap_err(), &path, 1, "invalid IOB2 tag \"LOC\"");
}

#[test]
fn iob_missing_tab_or_extra_column_names_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "notab.tsv", b"a\tO\nb O\n");
    assert_parse_error(IobReader::read(&path).unwrap_err(), &path, 2, "found 1");
    let path = write(&dir, "extra.tsv", b"a\tO\tx\n");
    assert_parse_error(IobReader::read(&path).unwrap_err(), &path, 1, "found 3");
}

#[test]
fn iob_invalid_utf8_and_empty_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "utf8.tsv", b"a\tO\n\n\xfe\tO\n");
    assert_parse_error(IobReader::read(&path).unwrap_err(), &path, 3, "invalid UTF-8");
    let blank = write(&dir, "blank.tsv", b"\n \n");
    assert_empty_file(IobReader::read(&blank).unwrap_err(), &blank);
}

/// The shared data file `relative` (under `../shared/data/`), or `None` with a note if the
/// shared data is not checked out beside the project.
fn shared(relative: &str) -> Option<PathBuf> {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data")).join(relative);
    if path.exists() {
        Some(path)
    } else {
        println!("skipped: shared data {} is not present", path.display());
        None
    }
}

#[test]
fn real_conllu_treebank() {
    let Some(path) = shared("ud/en_ewt-ud-dev.conllu") else { return };
    let sentences = CoNllUReader::read(&path).unwrap();
    assert_eq!(sentences.len(), 2001);
    assert_eq!(sentences.iter().map(|s| s.tokens.len()).sum::<usize>(), 25147);
    const UPOS: [&str; 17] = [
        "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN", "PUNCT", "SCONJ",
        "SYM", "VERB", "X",
    ];
    for s in &sentences {
        assert_eq!(s.tokens.len(), s.tags.len());
        assert!(s.tags.iter().all(|t| UPOS.contains(&t.as_str())), "{:?}", s.tags);
    }
    assert_eq!(sentences[0].tokens, ["From", "the", "AP", "comes", "this", "story", ":"]);
}

#[test]
fn real_panx_ner_file() {
    let Some(path) = shared("panx/dev-sw.tsv") else { return };
    let sentences = IobReader::read(&path).unwrap();
    assert_eq!(sentences.len(), 1000);
    assert_eq!(sentences.iter().map(|s| s.tokens.len()).sum::<usize>(), 5609);
    assert_eq!(
        sentences[0],
        sentence(&["Khartoum", ",", "Sudan", "-", "miloni", "3.2"], &["B-LOC", "O", "B-LOC", "O", "O", "O"])
    );
}

#[test]
fn real_text_file() {
    let Some(path) = shared("text/udhr.swh.txt") else { return };
    let corpus = read_text_corpus(&path, Lang::new("sw").unwrap()).unwrap();
    assert_eq!(corpus.len(), 92);
    assert!(corpus.sentences.iter().all(|s| !s.is_empty() && s.trim() == s));
}

#[test]
fn synthetic_languages_through_the_public_api() {
    let spec: SyntheticSpec = serde_json::from_str(r#"{"word_order": "sov", "sentences": 50, "seed": 1}"#).unwrap();
    let corpus = generate_synthetic(&spec, Lang::new("syn-a").unwrap()).unwrap();
    assert_eq!(corpus.len(), 50);
    assert_eq!(corpus, generate_synthetic(&spec, Lang::new("syn-a").unwrap()).unwrap());
    let lexicon = spec.lexicon().unwrap();
    let verbs = lexicon.words(PartOfSpeech::Verb);
    assert!(corpus.sentences.iter().all(|s| verbs.iter().any(|v| s.ends_with(&format!(" {v}")))));
}
