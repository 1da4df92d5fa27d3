//! The filter's `cd_values`: the user's words (the bound, per-column bounds, a model) and the
//! stored words `set_local` makes of them (layout version, element size, chunk shape, then the
//! user's words unchanged). The layout is documented once, in the crate's docs.

use baler::model::Model;
use baler::{BoundSpec, Bounds, DType, Layout};

/// The first stored word: `0xBA1E` in the high half (no user form starts with it: a user's
/// first word is a mode word, below 0x400), the layout version in the low half.
pub const STORED_MAGIC: u32 = 0xBA1E_0000;
/// The layout version this build writes and reads.
pub const LAYOUT_VERSION: u32 = 1;
/// The most chunk dimensions HDF5 allows (`H5S_MAX_RANK`).
pub const MAX_RANK: usize = 32;

/// The most parameters HDF5's `H5Pget_filter2` and `H5Pget_filter_by_id2` hand out: asked
/// for more, they fail ("probable uninitialized *cd_nelmts argument"). The filter function
/// itself receives all of them.
pub const MAX_READ: usize = 256;

/// Mode word flag: the value is an `f64`, its bits in the two words after (high, low).
pub const FLAG_F64_BITS: u32 = 0x100;
/// Mode word flag (default bound only): a 2-D chunk is a field (an image), not a table.
pub const FLAG_FIELD: u32 = 0x200;

/// What compressing or decoding a chunk needs, from the stored words.
#[derive(Debug, Clone)]
pub struct Params {
    /// f32 or f64.
    pub dtype: DType,
    /// The chunk's dimensions, slowest first.
    pub dims: Vec<u64>,
    /// Table (2-D chunks, unless asked otherwise) or field.
    pub layout: Layout,
    /// The default bound and the per-column overrides.
    pub bounds: Bounds,
    /// The learned predictor (tables only), from a `baler train` model file.
    pub model: Option<Model>,
    /// The model file's size in bytes (0 without a model).
    pub model_bytes: usize,
}

impl Params {
    /// The number of values in one chunk.
    pub fn chunk_len(&self) -> Option<usize> {
        self.dims
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d))
            .and_then(|n| usize::try_from(n).ok())
    }

    /// The number of bytes in one chunk.
    pub fn chunk_bytes(&self) -> Option<usize> {
        self.chunk_len()?.checked_mul(self.dtype.size())
    }
}

/// The user's part of the words, parsed.
#[derive(Debug, Clone)]
pub struct UserParams {
    /// The bounds (default and per column).
    pub bounds: Bounds,
    /// Whether a 2-D chunk is a field rather than a table.
    pub field_2d: bool,
    /// The model file's bytes, checked.
    pub model: Option<Model>,
    /// The model file's size in bytes (0 without a model).
    pub model_bytes: usize,
}

/// A mode word and its two value words as the bound text baler parses everywhere (`abs:1e-3`),
/// so the filter accepts exactly the bounds the command line does, checked the same way.
fn bound_text(mode: u32, a: u32, b: u32) -> Result<String, String> {
    let code = mode & 0xff;
    let f64_bits = mode & FLAG_F64_BITS != 0;
    let name = match code {
        1 => "abs",
        2 => "rel",
        3 => return Ok("lossless".into()),
        4 => "pwrel",
        5 => {
            if f64_bits || b != 0 {
                return Err(format!(
                    "bits:N is given as mode 5, N, 0 (got mode word {mode}, {a}, {b})"
                ));
            }
            return Ok(format!("bits:{a}"));
        }
        _ => {
            return Err(format!(
                "unknown bound mode {code} (1 abs, 2 rel, 3 lossless, 4 pwrel, 5 bits)"
            ));
        }
    };
    if f64_bits {
        let v = f64::from_bits((u64::from(a) << 32) | u64::from(b));
        // `{:e}` prints the shortest text that reads back as the same f64.
        Ok(format!("{name}:{v:e}"))
    } else {
        Ok(format!("{name}:{a}e-{b}"))
    }
}

/// Parses the user's words (see the crate docs).
pub fn parse_user(words: &[u32]) -> Result<UserParams, String> {
    let Some(&mode) = words.first() else {
        return Err(
            "no bound given: pass at least the bound's three values, e.g. 1, 1, 3 \
                    for abs:1e-3 (see the baler README, \"Inside HDF5\")"
                .into(),
        );
    };
    if mode & !(0xff | FLAG_F64_BITS | FLAG_FIELD) != 0 {
        return Err(format!("mode word {mode:#x} has unknown flags"));
    }
    let field_2d = mode & FLAG_FIELD != 0;
    let mode = mode & !FLAG_FIELD;
    let (default, mut rest) = if words.len() == 1 && mode == 3 {
        (bound_text(mode, 0, 0)?, &words[1..])
    } else if words.len() >= 3 {
        (bound_text(mode, words[1], words[2])?, &words[3..])
    } else {
        return Err(format!(
            "the bound takes three values (mode, value, value), {} given",
            words.len()
        ));
    };
    let default: BoundSpec = default.parse().map_err(|e: baler::Error| e.to_string())?;
    let mut bounds = Bounds::new(default);
    if let Some((&k, tail)) = rest.split_first() {
        let k = k as usize;
        if tail.len() < k.saturating_mul(4) {
            return Err(format!(
                "{k} per-column bounds announced but only {} values follow",
                tail.len()
            ));
        }
        for o in tail[..4 * k].chunks_exact(4) {
            if o[1] & FLAG_FIELD != 0 {
                return Err("the field flag (512) belongs to the first mode word only".into());
            }
            let text = format!("{}={}", o[0], bound_text(o[1], o[2], o[3])?);
            bounds = bounds.with_override_str(&text).map_err(|e| e.to_string())?;
        }
        rest = &tail[4 * k..];
    }
    let model_bytes = rest.first().map_or(0, |&l| l as usize);
    let model = match rest.split_first() {
        None => None,
        Some((&len, tail)) => {
            let len = len as usize;
            let words = len.div_ceil(4);
            if tail.len() != words {
                return Err(format!(
                    "a model of {len} bytes takes {words} values; {} follow",
                    tail.len()
                ));
            }
            let bytes: Vec<u8> = tail.iter().flat_map(|w| w.to_le_bytes()).collect();
            Some(Model::from_file_bytes(&bytes[..len]).map_err(|e| format!("model: {e}"))?)
        }
    };
    Ok(UserParams {
        bounds,
        field_2d,
        model,
        model_bytes,
    })
}

/// A bound's three words (`mode, a, b`; the inverse of what [`parse_user`] reads): a value that
/// `a × 10^-b` gives exactly (as the command line parses `abs:1e-3`) in that readable form,
/// any other as its `f64` bits (mode +256).
pub fn bound_words(spec: BoundSpec) -> [u32; 3] {
    let (code, v) = match spec {
        BoundSpec::Abs(v) => (1, v),
        BoundSpec::Rel(v) => (2, v),
        BoundSpec::Lossless => return [3, 0, 0],
        BoundSpec::PwRel(v) => (4, v),
        BoundSpec::Bits(n) => return [5, n, 0],
    };
    for b in 0..=20u32 {
        let a = (v * 10f64.powi(b as i32)).round();
        if (0.0..=f64::from(u32::MAX)).contains(&a)
            && format!("{a}e-{b}").parse::<f64>().ok() == Some(v)
        {
            return [code, a as u32, b];
        }
    }
    let bits = v.to_bits();
    [code | FLAG_F64_BITS, (bits >> 32) as u32, bits as u32]
}

/// The user's words for a default bound, per-column bounds (column index, bound) and a model
/// file's bytes: what a program writing the filter's parameters passes (the layout in the crate
/// docs).
pub fn user_words(
    default: BoundSpec,
    columns: &[(usize, BoundSpec)],
    model_file: Option<&[u8]>,
) -> Vec<u32> {
    let mut out = bound_words(default).to_vec();
    if columns.is_empty() && model_file.is_none() {
        return out;
    }
    out.push(columns.len() as u32);
    for &(j, spec) in columns {
        out.push(j as u32);
        out.extend_from_slice(&bound_words(spec));
    }
    if let Some(m) = model_file {
        out.extend(model_words(m));
    }
    out
}

/// The words packing a model file's bytes: its length, then the bytes in little-endian `u32`s.
pub fn model_words(file_bytes: &[u8]) -> Vec<u32> {
    let mut out = vec![file_bytes.len() as u32];
    out.extend(file_bytes.chunks(4).map(|c| {
        let mut w = [0u8; 4];
        w[..c.len()].copy_from_slice(c);
        u32::from_le_bytes(w)
    }));
    out
}

/// The user's words inside `words`, whether `words` is a user form or an earlier stored form
/// (set_local runs again on a copied dataset creation property list).
pub fn user_part(words: &[u32]) -> Result<&[u32], String> {
    match words.first() {
        Some(&w) if w & 0xffff_0000 == STORED_MAGIC => {
            let rank = *words.get(2).ok_or("stored parameters cut short")? as usize;
            words
                .get(3 + rank..)
                .ok_or_else(|| "stored parameters cut short".to_string())
        }
        _ => Ok(words),
    }
}

/// The stored words: what `set_local` writes for this element size and chunk shape. Checks the
/// user's words against the shape, so a mistake is an error when the dataset is created, not
/// on its first write.
pub fn stored(words: &[u32], elem_size: usize, dims: &[u64]) -> Result<Vec<u32>, String> {
    let user = user_part(words)?;
    let mut out = vec![
        STORED_MAGIC | LAYOUT_VERSION,
        elem_size as u32,
        dims.len() as u32,
    ];
    for &d in dims {
        out.push(u32::try_from(d).map_err(|_| format!("chunk dimension {d} above 2^32"))?);
    }
    out.extend_from_slice(user);
    parse_stored(&out)?;
    Ok(out)
}

/// Whether `words` (possibly only the first [`MAX_READ`]) start a stored form for this element
/// size and chunk shape.
pub fn is_stored_for(words: &[u32], elem_size: usize, dims: &[u64]) -> bool {
    words.len() >= 3 + dims.len()
        && words[0] == STORED_MAGIC | LAYOUT_VERSION
        && words[1] as usize == elem_size
        && words[2] as usize == dims.len()
        && words[3..3 + dims.len()]
            .iter()
            .zip(dims)
            .all(|(&w, &d)| u64::from(w) == d)
}

/// Parses the first words of a stored form whose whole length is `total` (HDF5 hands a reader
/// at most [`MAX_READ`]): all of it when complete; else everything before the model, whose
/// size is kept (`model_bytes`) but which is not decoded (`model` is `None`).
pub fn parse_stored_prefix(words: &[u32], total: usize) -> Result<Params, String> {
    if total <= words.len() {
        return parse_stored(words);
    }
    let rank = words.get(2).copied().unwrap_or(0) as usize;
    let user = words
        .get(3 + rank..)
        .ok_or("the stored parameters are cut short")?;
    // The model's length word follows the bound (3 words) and K per-column bounds.
    let k = *user.get(3).ok_or("the stored parameters are cut short")? as usize;
    let at = 3 + rank + 4 + 4 * k;
    let len = *words
        .get(at)
        .ok_or("the stored parameters are cut short before the model")?;
    let mut p = parse_stored(&words[..at])?;
    p.model_bytes = len as usize;
    Ok(p)
}

/// Parses the stored words (what the filter function receives).
pub fn parse_stored(words: &[u32]) -> Result<Params, String> {
    let head = words.first().copied().unwrap_or(0);
    if head & 0xffff_0000 != STORED_MAGIC {
        return Err("the filter's parameters were not completed by set_local".into());
    }
    if head & 0xffff != LAYOUT_VERSION {
        return Err(format!(
            "parameter layout version {} needs a newer baler filter (this one reads {LAYOUT_VERSION})",
            head & 0xffff
        ));
    }
    let dtype = match words.get(1) {
        Some(4) => DType::F32,
        Some(8) => DType::F64,
        other => return Err(format!("element size {other:?}: baler takes 4 or 8 bytes")),
    };
    let rank = words.get(2).copied().unwrap_or(0) as usize;
    if !(1..=MAX_RANK).contains(&rank) || words.len() < 3 + rank {
        return Err(format!("bad chunk rank {rank}"));
    }
    let dims: Vec<u64> = words[3..3 + rank].iter().map(|&d| u64::from(d)).collect();
    let user = parse_user(&words[3 + rank..])?;
    let layout = if rank == 2 && !user.field_2d {
        Layout::Table
    } else {
        Layout::Field
    };
    let columns = if layout == Layout::Table {
        dims[1] as usize
    } else {
        1
    };
    user.bounds
        .per_column(columns, &[], layout == Layout::Table)
        .map_err(|e| e.to_string())?;
    if let Some(m) = &user.model {
        if layout != Layout::Table {
            return Err("a model applies to tables (2-D chunks) only".into());
        }
        if m.columns.len() != columns {
            return Err(format!(
                "the model was trained on {} columns; the chunks have {columns}",
                m.columns.len()
            ));
        }
    }
    let params = Params {
        dtype,
        dims,
        layout,
        bounds: user.bounds,
        model: user.model,
        model_bytes: user.model_bytes,
    };
    if params.chunk_bytes().is_none() {
        return Err("the chunk is too large".into());
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_bounds_read_as_the_command_line_reads_them() {
        let u = parse_user(&[1, 1, 3]).unwrap();
        assert_eq!(u.bounds.default, BoundSpec::Abs(1e-3));
        let u = parse_user(&[2, 25, 5]).unwrap();
        assert_eq!(u.bounds.default, BoundSpec::Rel(25e-5));
        let u = parse_user(&[5, 12, 0]).unwrap();
        assert_eq!(u.bounds.default, BoundSpec::Bits(12));
        let u = parse_user(&[3]).unwrap();
        assert_eq!(u.bounds.default, BoundSpec::Lossless);
        let u = parse_user(&[4 | FLAG_FIELD, 1, 2]).unwrap();
        assert_eq!(u.bounds.default, BoundSpec::PwRel(1e-2));
        assert!(u.field_2d);
    }

    #[test]
    fn f64_bits_bounds_are_exact() {
        let v = 1.0f64 / 3.0;
        let b = v.to_bits();
        let u = parse_user(&[1 | FLAG_F64_BITS, (b >> 32) as u32, b as u32]).unwrap();
        assert_eq!(u.bounds.default, BoundSpec::Abs(v));
    }

    #[test]
    fn bad_words_are_errors() {
        assert!(parse_user(&[]).is_err());
        assert!(parse_user(&[1, 1]).is_err());
        assert!(parse_user(&[9, 1, 3]).is_err());
        assert!(parse_user(&[5, 60, 0]).is_err()); // bits above 52
        assert!(parse_user(&[4, 2, 0]).is_err()); // pwrel:2 is not below 1
        assert!(parse_user(&[1, 1, 3, 2, 0, 3, 0, 0]).is_err()); // 2 overrides, 1 given
        assert!(parse_user(&[1 | 0x800, 1, 3]).is_err());
        assert!(parse_user(&[1, 1, 3, 0, 8, 1, 2]).is_err()); // model words missing
    }

    #[test]
    fn stored_form_round_trips_and_is_idempotent() {
        let user = [2, 1, 3, 2, 0, 3, 0, 0, 2, 5, 10, 0];
        let s = stored(&user, 4, &[1000, 3]).unwrap();
        assert_eq!(&s[..5], &[STORED_MAGIC | 1, 4, 2, 1000, 3]);
        assert_eq!(&s[5..], &user);
        // set_local again on a stored form, with another chunk shape.
        let s2 = stored(&s, 8, &[10, 3]).unwrap();
        assert_eq!(&s2[..5], &[STORED_MAGIC | 1, 8, 2, 10, 3]);
        let p = parse_stored(&s2).unwrap();
        assert_eq!(p.dtype, DType::F64);
        assert_eq!(p.layout, Layout::Table);
        let specs = p.bounds.per_column(3, &[], true).unwrap();
        assert_eq!(
            specs,
            vec![
                BoundSpec::Lossless,
                BoundSpec::Rel(1e-3),
                BoundSpec::Bits(10)
            ]
        );
    }

    #[test]
    fn shape_mistakes_show_at_set_local() {
        // Column 5 of a 3-column chunk.
        assert!(stored(&[1, 1, 3, 1, 5, 3, 0, 0], 4, &[100, 3]).is_err());
        // Per-column bounds on a 3-D field.
        assert!(stored(&[1, 1, 3, 1, 0, 3, 0, 0], 4, &[4, 4, 4]).is_err());
        assert!(stored(&[1, 1, 3], 2, &[4]).is_err());
        assert!(parse_stored(&[1, 1, 3]).is_err());
        assert!(parse_stored(&[STORED_MAGIC | 2, 4, 1, 8, 1, 1, 3]).is_err());
    }

    #[test]
    fn bound_words_read_back_as_the_same_bounds() {
        let specs = [
            BoundSpec::Abs(1e-3),
            BoundSpec::Abs(0.25),
            BoundSpec::Abs(100.0),
            BoundSpec::Abs(691.234_567_890_123_4),
            BoundSpec::Rel(2.5e-4),
            BoundSpec::PwRel(1.0 / 3.0),
            BoundSpec::Bits(10),
            BoundSpec::Lossless,
        ];
        assert_eq!(bound_words(BoundSpec::Abs(1e-3)), [1, 1, 3]);
        assert_eq!(bound_words(BoundSpec::Rel(2.5e-4)), [2, 25, 5]);
        assert_eq!(
            bound_words(BoundSpec::Abs(691.234_567_890_123_4))[0],
            1 | FLAG_F64_BITS
        );
        for s in specs {
            let u = parse_user(&bound_words(s)).unwrap();
            assert_eq!(u.bounds.default, s);
        }
        let w = user_words(
            BoundSpec::Rel(1e-3),
            &[(0, BoundSpec::Lossless), (4, BoundSpec::Bits(10))],
            None,
        );
        assert_eq!(w, vec![2, 1, 3, 2, 0, 3, 0, 0, 4, 5, 10, 0]);
        assert_eq!(user_words(BoundSpec::Abs(1e-3), &[], None), vec![1, 1, 3]);
    }

    #[test]
    fn a_prefix_of_a_long_stored_form_parses_up_to_the_model() {
        // A table of 3 columns, rel:1e-3, column 2 lossless, a model of 5000 bytes (of which
        // HDF5 handed the first words only).
        let mut words = vec![STORED_MAGIC | 1, 4, 2, 100, 3, 2, 1, 3, 1, 2, 3, 0, 0, 5000];
        assert!(is_stored_for(&words, 4, &[100, 3]));
        assert!(!is_stored_for(&words, 8, &[100, 3]));
        assert!(!is_stored_for(&words, 4, &[50, 3]));
        words.extend([7u32; 242]);
        let p = parse_stored_prefix(&words, 14 + 1250).unwrap();
        assert_eq!(p.model_bytes, 5000);
        assert!(p.model.is_none());
        let specs = p.bounds.per_column(3, &[], true).unwrap();
        assert_eq!(specs[2], BoundSpec::Lossless);
        assert!(parse_stored_prefix(&words[..10], 1264).is_err());
    }

    #[test]
    fn model_words_pack_bytes() {
        let w = model_words(&[1, 2, 3, 4, 5]);
        assert_eq!(w, vec![5, 0x0403_0201, 5]);
    }
}
