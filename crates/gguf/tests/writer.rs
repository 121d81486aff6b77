//! The streaming writer: files gguf-py wrote come back byte-identical through read + write, and
//! the writer never leaves partial output or clobbers its input.

mod common;

use ggufy_gguf::{
    GgmlType, Gguf, GgufError, GgufWriter, MetaArray, MetaValue, TensorSpec, WritePlan,
    WriterOptions,
};

fn rewrite(src: &std::path::Path, dest: &std::path::Path) {
    let f = Gguf::open(src).unwrap();
    let plan = f.to_write_plan().unwrap();
    assert_eq!(plan.file_len(), f.layout().file_len, "{}", src.display());
    let mut w = GgufWriter::create(
        dest,
        plan,
        &WriterOptions {
            inputs: vec![src.to_path_buf()],
            ..Default::default()
        },
    )
    .unwrap();
    for t in f.tensors() {
        w.write_tensor(f.tensor_data(t).unwrap()).unwrap();
    }
    w.finish().unwrap();
}

#[test]
fn gguf_py_files_round_trip_byte_identical() {
    let tmp = tempfile::tempdir().unwrap();
    for src in common::gguf_files(&common::fixtures().join("gguf")) {
        let f = Gguf::open(&src).unwrap();
        if f.layout().endian != ggufy_gguf::Endian::Little {
            continue; // ggufy writes little-endian only
        }
        let dest = tmp.path().join("out.gguf");
        let _ = std::fs::remove_file(&dest);
        rewrite(&src, &dest);
        let a = std::fs::read(&src).unwrap();
        let b = std::fs::read(&dest).unwrap();
        assert!(a == b, "{} differs after a round trip", src.display());
    }
}

#[test]
fn refuses_to_overwrite_its_input_even_through_a_link() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("in.gguf");
    std::fs::copy(common::fixtures().join("gguf/align64.gguf"), &src).unwrap();
    let link = tmp.path().join("link.gguf");
    std::fs::hard_link(&src, &link).unwrap();
    let f = Gguf::open(&src).unwrap();
    let opts = WriterOptions {
        overwrite: true,
        inputs: vec![src.clone()],
    };
    let e = GgufWriter::create(&link, f.to_write_plan().unwrap(), &opts).unwrap_err();
    assert!(e.to_string().contains("same file as input"), "{e}");
    let before = std::fs::read(&src).unwrap();
    drop(f);
    assert_eq!(std::fs::read(&src).unwrap(), before);
}

#[test]
fn an_input_that_changes_during_the_write_discards_the_output() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("in.gguf");
    std::fs::copy(common::fixtures().join("gguf/align64.gguf"), &src).unwrap();
    let dest = tmp.path().join("out.gguf");
    type Change = fn(&std::path::Path);
    let changes: [(&str, Change); 3] = [
        ("size", |p| {
            let f = std::fs::OpenOptions::new().append(true).open(p).unwrap();
            std::io::Write::write_all(&mut &f, b"x").unwrap();
        }),
        ("modification time", |p| {
            let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
            let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
            f.set_modified(later).unwrap();
        }),
        ("replaced", |p| {
            let other = p.with_extension("new");
            std::fs::copy(p, &other).unwrap();
            std::fs::rename(&other, p).unwrap();
        }),
    ];
    for (what, change) in changes {
        let bytes = std::fs::read(&src).unwrap();
        let f = Gguf::open(&src).unwrap();
        let opts = WriterOptions {
            inputs: vec![src.clone()],
            ..Default::default()
        };
        let mut w = GgufWriter::create(&dest, f.to_write_plan().unwrap(), &opts).unwrap();
        for t in f.tensors() {
            w.write_tensor(f.tensor_data(t).unwrap()).unwrap();
        }
        change(&src);
        let e = w.finish().unwrap_err();
        assert!(matches!(e, GgufError::InputChanged { .. }), "{what}: {e}");
        assert!(e.to_string().contains("in.gguf"), "{what}: {e}");
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(
            !left.iter().any(|n| n.contains("out.gguf")),
            "{what}: {left:?}"
        );
        drop(f);
        std::fs::write(&src, &bytes).unwrap();
    }
}

#[test]
fn failed_or_abandoned_writes_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("out.gguf");
    let plan = WritePlan::new(
        vec![("general.architecture".into(), "llama".into())],
        vec![
            TensorSpec {
                name: "a".into(),
                dims: vec![32, 2],
                ty: GgmlType::Q8_0,
            },
            TensorSpec {
                name: "b".into(),
                dims: vec![3],
                ty: GgmlType::F32,
            },
        ],
    )
    .unwrap();
    let mut w = GgufWriter::create(&dest, plan.clone(), &WriterOptions::default()).unwrap();
    let e = w.write_tensor(&[0u8; 10]).unwrap_err();
    assert!(e.to_string().contains("tensor 'a' has 10 bytes"), "{e}");
    drop(w);
    let mut w = GgufWriter::create(&dest, plan.clone(), &WriterOptions::default()).unwrap();
    w.write_tensor(&[0u8; 68]).unwrap();
    let e = w.finish().unwrap_err();
    assert!(e.to_string().contains("tensor 'b'"), "{e}");
    let mut w = GgufWriter::create(&dest, plan, &WriterOptions::default()).unwrap();
    w.write_tensor(&[0u8; 68]).unwrap();
    let r: Result<(), _> = w.write_tensor_with(|_buf| Err("source went away"));
    assert!(r.is_err());
    drop(w);
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn writes_what_llama_cpp_expects() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("w.gguf");
    let meta = vec![
        ("general.architecture".to_owned(), MetaValue::from("llama")),
        ("general.alignment".to_owned(), MetaValue::U32(64)),
        ("llama.context_length".to_owned(), MetaValue::U32(128)),
        (
            "tokenizer.ggml.token_type".to_owned(),
            MetaValue::Array(MetaArray::I32(vec![1, 2, 3])),
        ),
    ];
    let tensors = vec![
        TensorSpec {
            name: "x".into(),
            dims: vec![5],
            ty: GgmlType::F32,
        },
        TensorSpec {
            name: "y".into(),
            dims: vec![64, 3],
            ty: GgmlType::Q4_0,
        },
    ];
    let plan = WritePlan::new(meta, tensors).unwrap();
    let mut w = GgufWriter::create(&dest, plan, &WriterOptions::default()).unwrap();
    w.write_tensor(&[1u8; 20]).unwrap();
    w.write_tensor_with(|buf| {
        buf.fill(7);
        Ok::<(), std::convert::Infallible>(())
    })
    .unwrap();
    w.finish().unwrap();
    let f = Gguf::open(&dest).unwrap();
    assert_eq!(f.layout().alignment, 64);
    assert_eq!(f.layout().data_offset % 64, 0);
    assert_eq!(f.tensors()[1].offset, 64);
    assert!(f.layout().warnings.is_empty());
    assert_eq!(f.tensor_data(&f.tensors()[1]).unwrap(), &[7u8; 108][..]);
    assert_eq!(f.layout().file_len, f.layout().data_offset + 64 + 128);
}

#[test]
fn strict_about_types_and_names() {
    let bad_type = WritePlan::new(
        vec![
            ("general.architecture".into(), "llama".into()),
            ("llama.block_count".into(), MetaValue::U64(2)),
        ],
        vec![],
    );
    assert!(matches!(bad_type, Err(GgufError::InvalidPlan(m)) if m.contains("llama.block_count")));
    let long = WritePlan::new(
        vec![],
        vec![TensorSpec {
            name: "n".repeat(64),
            dims: vec![1],
            ty: GgmlType::F32,
        }],
    );
    assert!(long.is_err());
    let ragged = WritePlan::new(
        vec![],
        vec![TensorSpec {
            name: "q".into(),
            dims: vec![33],
            ty: GgmlType::Q4_0,
        }],
    );
    assert!(ragged.is_err());
    let dup = WritePlan::new(
        vec![("a".into(), 1u32.into()), ("a".into(), 2u32.into())],
        vec![],
    );
    assert!(dup.is_err());
}
