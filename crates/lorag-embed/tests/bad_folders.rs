//! Broken model folders give errors that name the file (and field) at fault, never a panic.
//! Each folder is built in a temp dir from the real all-MiniLM-L6-v2's files.

use lorag_embed::{BertEmbedder, EmbedError, EmbedOptions};
use std::path::Path;

const SMALL_FILES: [&str; 4] = [
    "config.json",
    "tokenizer.json",
    "sentence_bert_config.json",
    "modules.json",
];

/// A copy of the real folder (weights hard-linked where possible), then `edit` applied.
fn folder(edit: impl FnOnce(&Path)) -> tempfile::TempDir {
    let src = lorag_models::test_model("all-minilm-l6-v2");
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path();
    for f in SMALL_FILES {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    std::fs::create_dir(dst.join("1_Pooling")).unwrap();
    std::fs::copy(
        src.join("1_Pooling/config.json"),
        dst.join("1_Pooling/config.json"),
    )
    .unwrap();
    let w = dst.join("model.safetensors");
    if std::fs::hard_link(src.join("model.safetensors"), &w).is_err() {
        std::fs::copy(src.join("model.safetensors"), &w).unwrap();
    }
    edit(dst);
    tmp
}

fn load_err(dir: &Path) -> (EmbedError, String) {
    match BertEmbedder::load(dir, &EmbedOptions::default()) {
        Ok(_) => panic!("{} loaded, but it is broken", dir.display()),
        Err(e) => {
            let msg = e.to_string();
            (e, msg)
        }
    }
}

fn edit_json(path: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, v.to_string()).unwrap();
}

#[test]
fn the_unbroken_copy_loads() {
    // The baseline for every test below: only the edit breaks the folder.
    let dir = folder(|_| {});
    BertEmbedder::load(dir.path(), &EmbedOptions::default()).unwrap();
}

#[test]
fn missing_config_json() {
    let dir = folder(|d| std::fs::remove_file(d.join("config.json")).unwrap());
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, EmbedError::MissingFile { .. }), "{e:?}");
    let want = dir.path().join("config.json").display().to_string();
    assert!(msg.starts_with(&want), "{msg}");
    assert!(msg.contains("missing"), "{msg}");
}

#[test]
fn missing_tokenizer_json() {
    let dir = folder(|d| std::fs::remove_file(d.join("tokenizer.json")).unwrap());
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, EmbedError::MissingFile { .. }), "{e:?}");
    let want = dir.path().join("tokenizer.json").display().to_string();
    assert!(msg.starts_with(&want), "{msg}");
}

#[test]
fn missing_weights_name_the_safetensors_file() {
    let dir = folder(|d| std::fs::remove_file(d.join("model.safetensors")).unwrap());
    let (_, msg) = load_err(dir.path());
    let want = dir.path().join("model.safetensors").display().to_string();
    assert!(msg.starts_with(&want), "{msg}");

    let dir = folder(|d| {
        std::fs::remove_file(d.join("model.safetensors")).unwrap();
        std::fs::write(d.join("pytorch_model.bin"), b"not read").unwrap();
    });
    let (_, msg) = load_err(dir.path());
    assert!(msg.contains("only safetensors"), "{msg}");
}

#[test]
fn corrupt_safetensors() {
    let dir = folder(|d| {
        let w = d.join("model.safetensors");
        std::fs::remove_file(&w).unwrap();
        std::fs::write(
            &w,
            b"\xff\xff\xff\xff\xff\xff\xff\x7fthis is not a safetensors file",
        )
        .unwrap();
    });
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, EmbedError::Weights { .. }), "{e:?}");
    let want = dir.path().join("model.safetensors").display().to_string();
    assert!(msg.starts_with(&want), "{msg}");
}

#[test]
fn truncated_safetensors() {
    let src = lorag_models::test_model("all-minilm-l6-v2").join("model.safetensors");
    let dir = folder(|d| {
        let w = d.join("model.safetensors");
        std::fs::remove_file(&w).unwrap();
        let bytes = std::fs::read(&src).unwrap();
        std::fs::write(&w, &bytes[..bytes.len() / 2]).unwrap();
    });
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, EmbedError::Weights { .. }), "{e:?}");
    assert!(msg.contains("model.safetensors"), "{msg}");
}

#[test]
fn safetensors_without_the_bert_tensors() {
    // A valid safetensors file holding one unrelated tensor.
    let dir = folder(|d| {
        let w = d.join("model.safetensors");
        std::fs::remove_file(&w).unwrap();
        let header = br#"{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&1f32.to_le_bytes());
        std::fs::write(&w, bytes).unwrap();
    });
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, EmbedError::Weights { .. }), "{e:?}");
    assert!(
        msg.contains("model.safetensors") && msg.contains("embeddings"),
        "{msg}"
    );
}

#[test]
fn config_without_hidden_size() {
    let dir = folder(|d| {
        edit_json(&d.join("config.json"), |v| {
            v.as_object_mut().unwrap().remove("hidden_size");
        })
    });
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, EmbedError::Config { .. }), "{e:?}");
    let want = format!(
        "{}: missing field `hidden_size`",
        dir.path().join("config.json").display()
    );
    assert!(msg.starts_with(&want), "{msg}");
}

#[test]
fn config_that_is_not_json() {
    let dir = folder(|d| std::fs::write(d.join("config.json"), "{ not json").unwrap());
    let (_, msg) = load_err(dir.path());
    assert!(
        msg.starts_with(&dir.path().join("config.json").display().to_string()),
        "{msg}"
    );
}

#[test]
fn model_type_other_than_bert() {
    let dir = folder(|d| edit_json(&d.join("config.json"), |v| v["model_type"] = "mpnet".into()));
    let (_, msg) = load_err(dir.path());
    assert!(
        msg.contains("config.json") && msg.contains("\"mpnet\""),
        "{msg}"
    );
}

#[test]
fn weights_of_another_shape() {
    // config.json says the feed-forward layers are 2048 wide; the weights are 1536 wide.
    let dir = folder(|d| {
        edit_json(&d.join("config.json"), |v| {
            v["intermediate_size"] = 2048.into()
        })
    });
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, EmbedError::Weights { .. }), "{e:?}");
    assert!(msg.contains("model.safetensors"), "{msg}");
}

#[test]
fn unsupported_pooling_modes() {
    let dir = folder(|d| {
        edit_json(&d.join("1_Pooling/config.json"), |v| {
            v["pooling_mode_mean_tokens"] = false.into();
            v["pooling_mode_max_tokens"] = true.into();
        })
    });
    let (_, msg) = load_err(dir.path());
    let want = dir
        .path()
        .join("1_Pooling/config.json")
        .display()
        .to_string();
    assert!(msg.starts_with(&want) && msg.contains("max"), "{msg}");

    let dir = folder(|d| {
        edit_json(&d.join("1_Pooling/config.json"), |v| {
            v["pooling_mode_cls_token"] = true.into();
        })
    });
    let (_, msg) = load_err(dir.path());
    assert!(msg.contains("cls + mean"), "{msg}");
}

#[test]
fn unsupported_module() {
    let dir = folder(|d| {
        edit_json(&d.join("modules.json"), |v| {
            v.as_array_mut().unwrap().push(serde_json::json!({
                "idx": 3, "name": "3", "path": "3_Dense",
                "type": "sentence_transformers.models.Dense"
            }));
        })
    });
    let (_, msg) = load_err(dir.path());
    assert!(
        msg.contains("modules.json") && msg.contains("Dense"),
        "{msg}"
    );
}

#[test]
fn tokenizer_that_does_not_parse() {
    let dir = folder(|d| std::fs::write(d.join("tokenizer.json"), r#"{"model": 1}"#).unwrap());
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, EmbedError::Tokenizer { .. }), "{e:?}");
    assert!(msg.contains("tokenizer.json"), "{msg}");
}

#[test]
fn not_a_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let (e, msg) = load_err(&tmp.path().join("nowhere"));
    assert!(matches!(e, EmbedError::NotAFolder(_)), "{e:?}");
    assert!(msg.contains("nowhere"), "{msg}");
}

#[test]
fn plain_folder_without_sentence_transformers_files() {
    // A bare Hugging Face folder: no modules.json, pooling or sentence_bert_config.json. It loads
    // with mean pooling and max_tokens from max_position_embeddings (512).
    let dir = folder(|d| {
        for f in ["modules.json", "sentence_bert_config.json"] {
            std::fs::remove_file(d.join(f)).unwrap();
        }
        std::fs::remove_dir_all(d.join("1_Pooling")).unwrap();
    });
    let e = BertEmbedder::load(dir.path(), &EmbedOptions::default()).unwrap();
    use lorag_embed::Embedder;
    assert_eq!(e.max_tokens(), 512);
    assert_eq!(e.pooling(), lorag_embed::Pooling::Mean);
    assert_eq!(e.embed(&["still works"]).unwrap()[0].len(), 384);
}
