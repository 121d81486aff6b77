//! Code point classes the pre-tokenizers split on, and GPT-2's byte ↔ code point mapping.

use std::sync::OnceLock;

use unicode_general_category::{GeneralCategory, get_general_category};

/// The one class llama.cpp's pre-tokenizers see for a code point (its general category, folded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CharClass {
    /// `\p{N}`.
    Number,
    /// `\p{L}`.
    Letter,
    /// `\p{P}`.
    Punctuation,
    /// `\p{M}`.
    Mark,
    /// `\p{S}`.
    Symbol,
    /// Separators, controls, formats, private use, unassigned.
    Other,
}

/// The class of `c` by its Unicode general category.
pub fn class_of(c: char) -> CharClass {
    use GeneralCategory as G;
    match get_general_category(c) {
        G::UppercaseLetter
        | G::LowercaseLetter
        | G::TitlecaseLetter
        | G::ModifierLetter
        | G::OtherLetter => CharClass::Letter,
        G::NonspacingMark | G::SpacingMark | G::EnclosingMark => CharClass::Mark,
        G::DecimalNumber | G::LetterNumber | G::OtherNumber => CharClass::Number,
        G::ConnectorPunctuation
        | G::DashPunctuation
        | G::OpenPunctuation
        | G::ClosePunctuation
        | G::InitialPunctuation
        | G::FinalPunctuation
        | G::OtherPunctuation => CharClass::Punctuation,
        G::MathSymbol | G::CurrencySymbol | G::ModifierSymbol | G::OtherSymbol => CharClass::Symbol,
        _ => CharClass::Other,
    }
}

/// Unicode's White_Space property (the 25 code points of PropList.txt).
pub fn is_whitespace(c: char) -> bool {
    matches!(
        c,
        '\u{9}'..='\u{D}'
            | ' '
            | '\u{85}'
            | '\u{A0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200A}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202F}'
            | '\u{205F}'
            | '\u{3000}'
    )
}

/// GPT-2's reversible byte → code point table: printable Latin-1 bytes stand for themselves, the
/// other 68 bytes take U+0100 onwards in byte order (so a space is 'Ġ').
fn byte_table() -> &'static [char; 256] {
    static TABLE: OnceLock<[char; 256]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = ['\0'; 256];
        let mut next = 0x100u32;
        for (b, slot) in t.iter_mut().enumerate() {
            let printable = matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF);
            let cp = if printable {
                b as u32
            } else {
                next += 1;
                next - 1
            };
            *slot = char::from_u32(cp).unwrap_or('\0');
        }
        t
    })
}

/// The code point GPT-2's byte-level BPE writes for byte `b`.
pub fn byte_to_char(b: u8) -> char {
    byte_table()[b as usize]
}

/// The byte a byte-level BPE code point stands for, if it is one of the 256.
pub fn char_to_byte(c: char) -> Option<u8> {
    let cp = c as u32;
    match cp {
        0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF => Some(cp as u8),
        0x100..=0x143 => byte_table().iter().position(|&x| x == c).map(|b| b as u8),
        _ => None,
    }
}

/// Appends `bytes` in GPT-2's byte-level encoding.
pub fn byte_encode_into(bytes: &[u8], out: &mut String) {
    for &b in bytes {
        out.push(byte_to_char(b));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_is_gpt2s() {
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(byte_to_char(b'a'), 'a');
        assert_eq!(byte_to_char(0xAD), '\u{143}');
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(byte_to_char(b)), Some(b));
        }
        assert_eq!(char_to_byte('€'), None);
    }

    #[test]
    fn classes() {
        assert_eq!(class_of('a'), CharClass::Letter);
        assert_eq!(class_of('語'), CharClass::Letter);
        assert_eq!(class_of('٣'), CharClass::Number);
        assert_eq!(class_of('$'), CharClass::Symbol);
        assert_eq!(class_of('_'), CharClass::Punctuation);
        assert_eq!(class_of('\u{301}'), CharClass::Mark);
        assert!(is_whitespace('\u{3000}') && !is_whitespace('\u{200B}'));
    }
}
