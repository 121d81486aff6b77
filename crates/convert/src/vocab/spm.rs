//! SentencePiece `tokenizer.model` files: a protobuf `ModelProto`, of which the converter needs
//! the pieces (text, score, type) and two normalizer flags. A small bounds-checked wire-format
//! reader; no protobuf code generation for four fields.

/// A piece's type, as SentencePiece numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PieceType {
    /// Ordinary piece (1, the default).
    Normal,
    /// The unknown-token piece (2).
    Unknown,
    /// Control symbols such as `<s>` (3).
    Control,
    /// User-defined symbols (4).
    UserDefined,
    /// Unused ids (5).
    Unused,
    /// Byte-fallback pieces `<0xXX>` (6).
    Byte,
}

/// One vocabulary entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Piece {
    /// The text (UTF-8, `▁` for spaces).
    pub text: String,
    /// Its score.
    pub score: f32,
    /// Its type.
    pub kind: PieceType,
}

/// What ggufy reads from a `ModelProto`.
#[derive(Clone, Debug, PartialEq)]
pub struct SpmModel {
    /// Pieces, in id order.
    pub pieces: Vec<Piece>,
    /// `normalizer_spec.add_dummy_prefix` (default true).
    pub add_dummy_prefix: bool,
    /// `normalizer_spec.remove_extra_whitespaces` (default true).
    pub remove_extra_whitespaces: bool,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

enum Field<'a> {
    Varint(u64),
    Fixed32(u32),
    Fixed64,
    Bytes(&'a [u8]),
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| format!("field of {n} bytes runs past the end at byte {}", self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn next(&mut self) -> Result<Option<(u64, Field<'a>)>, String> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Field::Fixed64
            }
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| "length overflows")?;
                Field::Bytes(self.take(n)?)
            }
            5 => {
                let b = self.take(4)?;
                Field::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            w => return Err(format!("unsupported protobuf wire type {w}")),
        };
        Ok(Some((key >> 3, field)))
    }
}

fn parse_piece(buf: &[u8], id: usize) -> Result<Piece, String> {
    let mut r = Reader { buf, pos: 0 };
    let mut piece = Piece {
        text: String::new(),
        score: 0.0,
        kind: PieceType::Normal,
    };
    while let Some((tag, f)) = r.next()? {
        match (tag, f) {
            (1, Field::Bytes(b)) => {
                piece.text = String::from_utf8(b.to_vec())
                    .map_err(|_| format!("pieces[{id}].piece is not UTF-8"))?;
            }
            (2, Field::Fixed32(bits)) => piece.score = f32::from_bits(bits),
            (3, Field::Varint(t)) => {
                piece.kind = match t {
                    1 => PieceType::Normal,
                    2 => PieceType::Unknown,
                    3 => PieceType::Control,
                    4 => PieceType::UserDefined,
                    5 => PieceType::Unused,
                    6 => PieceType::Byte,
                    other => {
                        return Err(format!(
                            "pieces[{id}].type {other} is not a SentencePiece type"
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(piece)
}

/// Parses a serialized `ModelProto`. Errors say which field is broken.
pub fn parse(buf: &[u8]) -> Result<SpmModel, String> {
    let mut r = Reader { buf, pos: 0 };
    let mut model = SpmModel {
        pieces: Vec::new(),
        add_dummy_prefix: true,
        remove_extra_whitespaces: true,
    };
    while let Some((tag, f)) = r.next()? {
        match (tag, f) {
            (1, Field::Bytes(b)) => {
                let id = model.pieces.len();
                model.pieces.push(parse_piece(b, id)?);
            }
            (3, Field::Bytes(b)) => {
                let mut n = Reader { buf: b, pos: 0 };
                while let Some((t, f)) = n.next()? {
                    match (t, f) {
                        (3, Field::Varint(v)) => model.add_dummy_prefix = v != 0,
                        (4, Field::Varint(v)) => model.remove_extra_whitespaces = v != 0,
                        _ => {}
                    }
                }
            }
            (_, Field::Fixed64 | Field::Varint(_) | Field::Fixed32(_) | Field::Bytes(_)) => {}
        }
    }
    if model.pieces.is_empty() {
        return Err("no pieces: not a SentencePiece model".into());
    }
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn bytes_field(tag: u64, b: &[u8], out: &mut Vec<u8>) {
        varint(tag << 3 | 2, out);
        varint(b.len() as u64, out);
        out.extend_from_slice(b);
    }

    #[test]
    fn reads_pieces_and_flags() {
        let mut p = Vec::new();
        bytes_field(1, "▁the".as_bytes(), &mut p);
        varint(2 << 3 | 5, &mut p);
        p.extend_from_slice(&(-1.5f32).to_le_bytes());
        varint(3 << 3, &mut p);
        varint(6, &mut p);
        let mut norm = Vec::new();
        varint(3 << 3, &mut norm);
        varint(0, &mut norm);
        let mut m = Vec::new();
        bytes_field(1, &p, &mut m);
        bytes_field(3, &norm, &mut m);
        let model = parse(&m).unwrap();
        assert_eq!(model.pieces[0].text, "▁the");
        assert_eq!(model.pieces[0].score, -1.5);
        assert_eq!(model.pieces[0].kind, PieceType::Byte);
        assert!(!model.add_dummy_prefix);
        assert!(model.remove_extra_whitespaces);
    }

    #[test]
    fn truncation_is_an_error_not_a_panic() {
        let mut p = Vec::new();
        bytes_field(1, b"abc", &mut p);
        let mut m = Vec::new();
        bytes_field(1, &p, &mut m);
        for cut in 0..m.len() {
            let _ = parse(&m[..cut]);
        }
        assert!(parse(&m[..m.len() - 1]).is_err());
        assert!(parse(&[0xff; 12]).is_err());
    }
}
