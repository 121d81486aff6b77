//! NF4 files are checked before use: a listed tensor that is missing, or whose scales do not fit
//! its codes, is an error naming the tensor, never a guess.

use ggufy_gguf::{
    GgmlType, Gguf, GgufWriter, MetaArray, MetaValue, TensorSpec, WritePlan, WriterOptions,
};
use ggufy_plan::{Encoding, QuantizePolicy, quantize_plan};

fn nf4_file(dir: &std::path::Path, absmax_cols: u64, listed: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{absmax_cols}-{listed}.gguf"));
    let meta = vec![
        ("general.architecture".to_owned(), MetaValue::from("llama")),
        ("ggufy.nf4.block_size".to_owned(), MetaValue::U32(64)),
        (
            "ggufy.nf4.tensors".to_owned(),
            MetaValue::Array(MetaArray::String(vec![listed.to_owned()])),
        ),
    ];
    let tensors = vec![
        TensorSpec {
            name: "w.weight".into(),
            dims: vec![64, 2],
            ty: GgmlType::I8,
        },
        TensorSpec {
            name: "w.weight.absmax".into(),
            dims: vec![absmax_cols, 2],
            ty: GgmlType::F32,
        },
    ];
    let mut w = GgufWriter::create(
        &path,
        WritePlan::new(meta, tensors).unwrap(),
        &WriterOptions::default(),
    )
    .unwrap();
    w.write_tensor(&[0x77; 128]).unwrap();
    w.write_tensor(&vec![0u8; 4 * absmax_cols as usize * 2])
        .unwrap();
    w.finish().unwrap();
    path
}

#[test]
fn rejects_inconsistent_nf4_files() {
    let dir = tempfile::tempdir().unwrap();
    let policy = QuantizePolicy {
        target: Encoding::Ggml(GgmlType::Q8_0),
        pure: false,
        keep: vec![],
    };
    let ok = Gguf::open(nf4_file(dir.path(), 2, "w.weight")).unwrap();
    let (plan, warnings) = quantize_plan(&ok, &policy).unwrap();
    assert_eq!(plan.tensors.len(), 1, "codes and scales become one tensor");
    assert_eq!(plan.tensors[0].dims, [128, 2]);
    assert!(warnings[0].contains("(NF4)"));

    let bad_scales = Gguf::open(nf4_file(dir.path(), 3, "w.weight")).unwrap();
    let e = quantize_plan(&bad_scales, &policy).unwrap_err().to_string();
    assert!(e.contains("w.weight") && e.contains("do not match"), "{e}");

    let missing = Gguf::open(nf4_file(dir.path(), 2, "x.weight")).unwrap();
    let e = quantize_plan(&missing, &policy).unwrap_err().to_string();
    assert!(
        e.contains("x.weight") && e.contains("not in the file"),
        "{e}"
    );
}
