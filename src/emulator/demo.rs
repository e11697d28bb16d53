//! The repositories served when no root directory is given: a tiny model with two branches and
//! a tiny dataset, in memory except for one synthetic 24 MiB weight file.

use bytes::Bytes;

use super::store::{BranchSpec, FileSpec, Gated, RepoSpec, Source};
use crate::repo::{RepoId, RepoKind, RepoPath, Revision};

/// The demo model id.
pub const DEMO_MODEL: &str = "hfmesh-demo/tiny-model";
/// The demo dataset id.
pub const DEMO_DATASET: &str = "hfmesh-demo/tiny-dataset";
/// Size of the demo model's synthetic `model.safetensors`.
pub const DEMO_WEIGHTS_SIZE: u64 = 24 * 1024 * 1024;
/// Seed of the demo model's synthetic `model.safetensors`.
pub const DEMO_WEIGHTS_SEED: u64 = 2024;

const CONFIG: &str = r#"{
  "architectures": ["TinyForCausalLM"],
  "hidden_size": 64,
  "num_attention_heads": 4,
  "num_hidden_layers": 2,
  "vocab_size": 256,
  "torch_dtype": "float32"
}
"#;

const CONFIG_EXPERIMENTAL: &str = r#"{
  "architectures": ["TinyForCausalLM"],
  "hidden_size": 128,
  "num_attention_heads": 8,
  "num_hidden_layers": 4,
  "vocab_size": 256,
  "torch_dtype": "bfloat16"
}
"#;

const TOKENIZER: &str = r#"{"version": "1.0", "model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": []}}
"#;

const GENERATION_CONFIG: &str = "{\"max_new_tokens\": 32, \"do_sample\": false}\n";

const ONNX: &[u8] = b"\x08\x07\x12\x0chfmesh-demo:\x04tiny";

const DATASET_README: &str =
    "---\nlicense: apache-2.0\n---\n# tiny-dataset\n\nA few rows for hfmesh demos.\n";

const TRAIN_CSV: &str = "text,label\nthe cat sat,0\nthe dog ran,1\na bird sang,0\n";

const TEST_CSV: &str = "text,label\na fish swam,1\n";

fn mem(path: &str, data: &'static [u8]) -> FileSpec {
    FileSpec {
        path: RepoPath::parse(path).expect("demo paths are valid"),
        size: data.len() as u64,
        source: Source::Memory(Bytes::from_static(data)),
        sha256: None,
    }
}

fn repo(kind: RepoKind, id: &str, branches: Vec<BranchSpec>) -> RepoSpec {
    let id = RepoId::parse(id).expect("demo ids are valid");
    RepoSpec {
        kind,
        id,
        gated: Gated::No,
        private: false,
        tokens: vec![],
        branches,
    }
}

/// The demo repositories.
pub(crate) fn demo_repos() -> Vec<RepoSpec> {
    let weights = FileSpec {
        path: RepoPath::parse("model.safetensors").expect("valid"),
        size: DEMO_WEIGHTS_SIZE,
        source: Source::Synthetic {
            seed: DEMO_WEIGHTS_SEED,
        },
        sha256: None,
    };
    let common = vec![
        mem("tokenizer.json", TOKENIZER.as_bytes()),
        mem("generation_config.json", GENERATION_CONFIG.as_bytes()),
        mem("onnx/model.onnx", ONNX),
        weights,
    ];
    let mut main = common.clone();
    main.push(mem("config.json", CONFIG.as_bytes()));
    let mut experimental = common;
    experimental.push(mem("config.json", CONFIG_EXPERIMENTAL.as_bytes()));
    let model = repo(
        RepoKind::Model,
        DEMO_MODEL,
        vec![
            BranchSpec {
                name: Revision::main(),
                tags: vec![],
                files: main,
            },
            BranchSpec {
                name: Revision::parse("experimental").expect("valid"),
                tags: vec![],
                files: experimental,
            },
        ],
    );
    let files = vec![
        mem("README.md", DATASET_README.as_bytes()),
        mem("data/train.csv", TRAIN_CSV.as_bytes()),
        mem("data/test.csv", TEST_CSV.as_bytes()),
    ];
    let dataset = repo(
        RepoKind::Dataset,
        DEMO_DATASET,
        vec![BranchSpec {
            name: Revision::main(),
            tags: vec![],
            files,
        }],
    );
    vec![model, dataset]
}
