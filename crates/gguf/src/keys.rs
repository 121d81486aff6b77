//! The value types llama.cpp expects for standard metadata keys (those gguf-py writes).
//!
//! llama.cpp's typed getters are strict: a count stored as UINT64 where it expects UINT32 fails to
//! load. ggufy reads leniently but writes only these types; [`normalize`] converts a lenient value
//! to its canonical type when the value fits.

use crate::value::{MetaArray, MetaValue, ValueType};

/// What a standard key must hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Canonical {
    /// A scalar of this type.
    Scalar(ValueType),
    /// An array whose elements have this type.
    Array(ValueType),
    /// Either a scalar or a per-layer array of this integer type (gguf-py writes u32; i32 arrays
    /// exist in the wild and llama.cpp reads both).
    ScalarOrArray(ValueType),
}

const GENERAL: &[(&str, Canonical)] = {
    use Canonical::{Array as Arr, Scalar};
    use ValueType::{Bool, F32, I32, String, U8, U16, U32};
    &[
        ("general.architecture", Scalar(String)),
        ("general.quantization_version", Scalar(U32)),
        ("general.alignment", Scalar(U32)),
        ("general.file_type", Scalar(U32)),
        ("general.name", Scalar(String)),
        ("general.type", Scalar(String)),
        ("general.basename", Scalar(String)),
        ("general.finetune", Scalar(String)),
        ("general.version", Scalar(String)),
        ("general.size_label", Scalar(String)),
        ("general.license", Scalar(String)),
        ("general.base_model.count", Scalar(U32)),
        ("general.tags", Arr(String)),
        ("general.languages", Arr(String)),
        ("tokenizer.ggml.model", Scalar(String)),
        ("tokenizer.ggml.pre", Scalar(String)),
        ("tokenizer.ggml.tokens", Arr(String)),
        ("tokenizer.ggml.scores", Arr(F32)),
        ("tokenizer.ggml.token_type", Arr(I32)),
        ("tokenizer.ggml.merges", Arr(String)),
        ("tokenizer.ggml.bos_token_id", Scalar(U32)),
        ("tokenizer.ggml.eos_token_id", Scalar(U32)),
        ("tokenizer.ggml.unknown_token_id", Scalar(U32)),
        ("tokenizer.ggml.seperator_token_id", Scalar(U32)),
        ("tokenizer.ggml.padding_token_id", Scalar(U32)),
        ("tokenizer.ggml.cls_token_id", Scalar(U32)),
        ("tokenizer.ggml.mask_token_id", Scalar(U32)),
        ("tokenizer.ggml.eot_token_id", Scalar(U32)),
        ("tokenizer.ggml.eom_token_id", Scalar(U32)),
        ("tokenizer.ggml.add_bos_token", Scalar(Bool)),
        ("tokenizer.ggml.add_eos_token", Scalar(Bool)),
        ("tokenizer.ggml.add_sep_token", Scalar(Bool)),
        ("tokenizer.ggml.add_space_prefix", Scalar(Bool)),
        ("tokenizer.ggml.remove_extra_whitespaces", Scalar(Bool)),
        ("tokenizer.ggml.precompiled_charsmap", Arr(U8)),
        ("tokenizer.chat_template", Scalar(String)),
        ("split.no", Scalar(U16)),
        ("split.count", Scalar(U16)),
        ("split.tensors.count", Scalar(I32)),
    ]
};

/// Keys that follow `{arch}.`, where arch is `general.architecture`.
const PER_ARCH: &[(&str, Canonical)] = {
    use Canonical::{Scalar, ScalarOrArray};
    use ValueType::{Bool, F32, String, U32};
    &[
        ("context_length", Scalar(U32)),
        ("embedding_length", Scalar(U32)),
        ("block_count", Scalar(U32)),
        ("feed_forward_length", ScalarOrArray(U32)),
        ("vocab_size", Scalar(U32)),
        ("expert_count", Scalar(U32)),
        ("expert_used_count", Scalar(U32)),
        ("attention.head_count", ScalarOrArray(U32)),
        ("attention.head_count_kv", ScalarOrArray(U32)),
        ("attention.layer_norm_rms_epsilon", Scalar(F32)),
        ("attention.layer_norm_epsilon", Scalar(F32)),
        ("attention.key_length", Scalar(U32)),
        ("attention.value_length", Scalar(U32)),
        ("rope.dimension_count", Scalar(U32)),
        ("rope.freq_base", Scalar(F32)),
        ("rope.scale_linear", Scalar(F32)),
        ("rope.scaling.type", Scalar(String)),
        ("rope.scaling.factor", Scalar(F32)),
        ("rope.scaling.original_context_length", Scalar(U32)),
        ("rope.scaling.finetuned", Scalar(Bool)),
    ]
};

/// The canonical type of `key`, given the file's architecture; `None` for keys not in the table.
pub fn canonical(key: &str, arch: Option<&str>) -> Option<Canonical> {
    if let Some((_, c)) = GENERAL.iter().find(|(k, _)| *k == key) {
        return Some(*c);
    }
    let rest = key.strip_prefix(arch?)?.strip_prefix('.')?;
    PER_ARCH.iter().find(|(k, _)| *k == rest).map(|(_, c)| *c)
}

/// Whether `v` already has the canonical shape `c`.
pub fn conforms(v: &MetaValue, c: Canonical) -> bool {
    match (c, v) {
        (Canonical::Scalar(t), v) => v.value_type() == t,
        (Canonical::Array(t), MetaValue::Array(a)) => a.elem_type() == t,
        (Canonical::ScalarOrArray(t), MetaValue::Array(a)) => {
            a.elem_type() == t || (t == ValueType::U32 && a.elem_type() == ValueType::I32)
        }
        (Canonical::ScalarOrArray(t), v) => v.value_type() == t,
        _ => false,
    }
}

/// Converts `v` to the canonical type `c` when its value fits (floats are rounded to f32, as
/// llama.cpp reads them); `None` when the value is out of range.
pub fn normalize(v: &MetaValue, c: Canonical) -> Option<MetaValue> {
    if conforms(v, c) {
        return Some(v.clone());
    }
    match (c, v) {
        (Canonical::Scalar(t) | Canonical::ScalarOrArray(t), v) => convert_scalar(v, t),
        (Canonical::Array(t), MetaValue::Array(a)) => convert_array(a, t).map(MetaValue::Array),
        _ => None,
    }
}

fn as_i128(v: &MetaValue) -> Option<i128> {
    Some(match *v {
        MetaValue::U8(x) => x.into(),
        MetaValue::I8(x) => x.into(),
        MetaValue::U16(x) => x.into(),
        MetaValue::I16(x) => x.into(),
        MetaValue::U32(x) => x.into(),
        MetaValue::I32(x) => x.into(),
        MetaValue::U64(x) => x.into(),
        MetaValue::I64(x) => x.into(),
        _ => return None,
    })
}

fn convert_scalar(v: &MetaValue, t: ValueType) -> Option<MetaValue> {
    Some(match t {
        ValueType::U16 => MetaValue::U16(u16::try_from(as_i128(v)?).ok()?),
        ValueType::U32 => MetaValue::U32(u32::try_from(as_i128(v)?).ok()?),
        ValueType::I32 => MetaValue::I32(i32::try_from(as_i128(v)?).ok()?),
        ValueType::F32 => match *v {
            // llama.cpp reads floats only as f32: round when the value is in f32's range.
            MetaValue::F64(x) if !x.is_finite() || x.abs() <= f64::from(f32::MAX) => {
                MetaValue::F32(x as f32)
            }
            _ => return None,
        },
        _ => return None,
    })
}

fn convert_array(a: &MetaArray, t: ValueType) -> Option<MetaArray> {
    let ints: Vec<i128> = match a {
        MetaArray::U8(v) => v.iter().map(|&x| x.into()).collect(),
        MetaArray::I8(v) => v.iter().map(|&x| x.into()).collect(),
        MetaArray::U16(v) => v.iter().map(|&x| x.into()).collect(),
        MetaArray::I16(v) => v.iter().map(|&x| x.into()).collect(),
        MetaArray::U32(v) => v.iter().map(|&x| x.into()).collect(),
        MetaArray::I32(v) => v.iter().map(|&x| x.into()).collect(),
        MetaArray::U64(v) => v.iter().map(|&x| x.into()).collect(),
        MetaArray::I64(v) => v.iter().map(|&x| x.into()).collect(),
        MetaArray::F64(v) if t == ValueType::F32 => {
            return v
                .iter()
                .map(|&x| (!x.is_finite() || x.abs() <= f64::from(f32::MAX)).then_some(x as f32))
                .collect::<Option<Vec<f32>>>()
                .map(MetaArray::F32);
        }
        _ => return None,
    };
    Some(match t {
        ValueType::I32 => MetaArray::I32(
            ints.into_iter()
                .map(|x| i32::try_from(x).ok())
                .collect::<Option<_>>()?,
        ),
        ValueType::U32 => MetaArray::U32(
            ints.into_iter()
                .map(|x| u32::try_from(x).ok())
                .collect::<Option<_>>()?,
        ),
        ValueType::U8 => MetaArray::U8(
            ints.into_iter()
                .map(|x| u8::try_from(x).ok())
                .collect::<Option<_>>()?,
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_up_general_and_arch_keys() {
        assert_eq!(
            canonical("general.alignment", None),
            Some(Canonical::Scalar(ValueType::U32))
        );
        assert_eq!(
            canonical("llama.context_length", Some("llama")),
            Some(Canonical::Scalar(ValueType::U32))
        );
        assert_eq!(canonical("llama.context_length", Some("qwen2")), None);
        assert_eq!(canonical("llamax.context_length", Some("llama")), None);
        assert_eq!(canonical("my.own.key", Some("llama")), None);
    }

    #[test]
    fn normalizes_only_when_the_value_fits() {
        let u32c = Canonical::Scalar(ValueType::U32);
        assert_eq!(
            normalize(&MetaValue::U64(4096), u32c),
            Some(MetaValue::U32(4096))
        );
        assert_eq!(normalize(&MetaValue::I32(7), u32c), Some(MetaValue::U32(7)));
        assert_eq!(normalize(&MetaValue::I32(-1), u32c), None);
        assert_eq!(normalize(&MetaValue::U64(1 << 40), u32c), None);
        let f32c = Canonical::Scalar(ValueType::F32);
        assert_eq!(
            normalize(&MetaValue::F64(0.5), f32c),
            Some(MetaValue::F32(0.5))
        );
        assert_eq!(
            normalize(&MetaValue::F64(0.1), f32c),
            Some(MetaValue::F32(0.1))
        );
        assert_eq!(normalize(&MetaValue::F64(1e300), f32c), None);
        let tt = Canonical::Array(ValueType::I32);
        assert_eq!(
            normalize(&MetaValue::Array(MetaArray::U8(vec![1, 3])), tt),
            Some(MetaValue::Array(MetaArray::I32(vec![1, 3])))
        );
        let heads = Canonical::ScalarOrArray(ValueType::U32);
        assert!(conforms(
            &MetaValue::Array(MetaArray::I32(vec![8, 8])),
            heads
        ));
    }
}
