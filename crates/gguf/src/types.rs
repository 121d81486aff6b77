//! ggml tensor types: ids, names and block geometry, as `ggml.h` / `ggml-common.h` define them.

use std::fmt;

/// A ggml tensor type that a GGUF file may store; the id is what the file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(non_camel_case_types, missing_docs)]
#[repr(u32)]
pub enum GgmlType {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    IQ2_XXS = 16,
    IQ2_XS = 17,
    IQ3_XXS = 18,
    IQ1_S = 19,
    IQ4_NL = 20,
    IQ3_S = 21,
    IQ2_S = 22,
    IQ4_XS = 23,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    IQ1_M = 29,
    BF16 = 30,
    TQ1_0 = 34,
    TQ2_0 = 35,
    MXFP4 = 39,
    NVFP4 = 40,
    Q1_0 = 41,
    Q2_0 = 42,
}

/// Why a type id from a file is not a usable [`GgmlType`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TypeIdError {
    /// An id ggml once defined and has since removed from files (block size 0 in ggml today).
    Removed(u32, &'static str),
    /// An id beyond every type this build of ggufy knows.
    Unknown(u32),
}

impl fmt::Display for TypeIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TypeIdError::Removed(id, name) => write!(
                f,
                "ggml type id {id} ({name}) was removed from GGUF files; re-convert or re-quantize the model"
            ),
            TypeIdError::Unknown(id) => write!(
                f,
                "unknown ggml type id {id} (ggufy knows ids 0..={})",
                GgmlType::MAX_ID
            ),
        }
    }
}

impl GgmlType {
    /// Every type ggml defines today, in id order.
    pub const ALL: [GgmlType; 35] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q8_1,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::Q8_K,
        GgmlType::IQ2_XXS,
        GgmlType::IQ2_XS,
        GgmlType::IQ3_XXS,
        GgmlType::IQ1_S,
        GgmlType::IQ4_NL,
        GgmlType::IQ3_S,
        GgmlType::IQ2_S,
        GgmlType::IQ4_XS,
        GgmlType::I8,
        GgmlType::I16,
        GgmlType::I32,
        GgmlType::I64,
        GgmlType::F64,
        GgmlType::IQ1_M,
        GgmlType::BF16,
        GgmlType::TQ1_0,
        GgmlType::TQ2_0,
        GgmlType::MXFP4,
        GgmlType::NVFP4,
        GgmlType::Q1_0,
        GgmlType::Q2_0,
    ];

    /// The largest id ggml defines (GGML_TYPE_COUNT - 1).
    pub const MAX_ID: u32 = 42;

    /// Maps a type id read from a file; removed and unknown ids are errors, never size-0 types.
    pub fn from_id(id: u32) -> Result<GgmlType, TypeIdError> {
        if let Some(t) = GgmlType::ALL.iter().find(|t| t.id() == id) {
            return Ok(*t);
        }
        let removed = match id {
            4 => "Q4_2",
            5 => "Q4_3",
            31 => "Q4_0_4_4",
            32 => "Q4_0_4_8",
            33 => "Q4_0_8_8",
            36 => "IQ4_NL_4_4",
            37 => "IQ4_NL_4_8",
            38 => "IQ4_NL_8_8",
            _ => return Err(TypeIdError::Unknown(id)),
        };
        Err(TypeIdError::Removed(id, removed))
    }

    /// Looks a type up by its ggml name, case-insensitively (`q4_k`, `BF16`).
    pub fn from_name(name: &str) -> Option<GgmlType> {
        GgmlType::ALL
            .iter()
            .copied()
            .find(|t| t.name().eq_ignore_ascii_case(name))
    }

    /// The id stored in GGUF tensor infos.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// ggml's name for the type, as gguf-py's `GGMLQuantizationType` spells it.
    pub fn name(self) -> &'static str {
        self.geometry().0
    }

    /// Elements per block: quantized rows must be a multiple of this.
    pub fn block_size(self) -> u64 {
        self.geometry().1
    }

    /// Bytes per block (ggml's `type_size`).
    pub fn type_size(self) -> u64 {
        self.geometry().2
    }

    /// True for block-quantized types (block size above one element).
    pub fn is_quantized(self) -> bool {
        self.block_size() > 1
    }

    /// Bytes of one row of `ne0` elements, or `None` if `ne0` is not a whole number of blocks
    /// or the size overflows.
    pub fn row_bytes(self, ne0: u64) -> Option<u64> {
        if !ne0.is_multiple_of(self.block_size()) {
            return None;
        }
        (ne0 / self.block_size()).checked_mul(self.type_size())
    }

    fn geometry(self) -> (&'static str, u64, u64) {
        use GgmlType::*;
        match self {
            F32 => ("F32", 1, 4),
            F16 => ("F16", 1, 2),
            Q4_0 => ("Q4_0", 32, 18),
            Q4_1 => ("Q4_1", 32, 20),
            Q5_0 => ("Q5_0", 32, 22),
            Q5_1 => ("Q5_1", 32, 24),
            Q8_0 => ("Q8_0", 32, 34),
            // ggml's struct is 36 bytes; gguf-py's table says 40, which is stale. Never stored in files.
            Q8_1 => ("Q8_1", 32, 36),
            Q2_K => ("Q2_K", 256, 84),
            Q3_K => ("Q3_K", 256, 110),
            Q4_K => ("Q4_K", 256, 144),
            Q5_K => ("Q5_K", 256, 176),
            Q6_K => ("Q6_K", 256, 210),
            Q8_K => ("Q8_K", 256, 292),
            IQ2_XXS => ("IQ2_XXS", 256, 66),
            IQ2_XS => ("IQ2_XS", 256, 74),
            IQ3_XXS => ("IQ3_XXS", 256, 98),
            IQ1_S => ("IQ1_S", 256, 50),
            IQ4_NL => ("IQ4_NL", 32, 18),
            IQ3_S => ("IQ3_S", 256, 110),
            IQ2_S => ("IQ2_S", 256, 82),
            IQ4_XS => ("IQ4_XS", 256, 136),
            I8 => ("I8", 1, 1),
            I16 => ("I16", 1, 2),
            I32 => ("I32", 1, 4),
            I64 => ("I64", 1, 8),
            F64 => ("F64", 1, 8),
            IQ1_M => ("IQ1_M", 256, 56),
            BF16 => ("BF16", 1, 2),
            TQ1_0 => ("TQ1_0", 256, 54),
            TQ2_0 => ("TQ2_0", 256, 66),
            MXFP4 => ("MXFP4", 32, 17),
            NVFP4 => ("NVFP4", 64, 36),
            Q1_0 => ("Q1_0", 128, 18),
            Q2_0 => ("Q2_0", 64, 18),
        }
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_are_sorted() {
        for w in GgmlType::ALL.windows(2) {
            assert!(w[0].id() < w[1].id());
        }
        for t in GgmlType::ALL {
            assert_eq!(GgmlType::from_id(t.id()), Ok(t));
            assert_eq!(GgmlType::from_name(&t.name().to_lowercase()), Some(t));
            assert!(t.block_size() > 0 && t.type_size() > 0);
        }
        assert_eq!(GgmlType::ALL.last().map(|t| t.id()), Some(GgmlType::MAX_ID));
    }

    #[test]
    fn removed_and_unknown_ids_are_errors() {
        for id in [4, 5, 31, 32, 33, 36, 37, 38] {
            assert!(matches!(
                GgmlType::from_id(id),
                Err(TypeIdError::Removed(..))
            ));
        }
        for id in [43, 1000, u32::MAX] {
            assert_eq!(GgmlType::from_id(id), Err(TypeIdError::Unknown(id)));
        }
    }

    #[test]
    fn row_bytes_checks_blocks() {
        assert_eq!(GgmlType::Q4_0.row_bytes(64), Some(36));
        assert_eq!(GgmlType::Q4_0.row_bytes(33), None);
        assert_eq!(GgmlType::Q4_K.row_bytes(512), Some(288));
        assert_eq!(GgmlType::F32.row_bytes(u64::MAX), None);
    }
}
