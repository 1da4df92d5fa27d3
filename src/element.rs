//! The floating-point element types baler stores: `f32` and `f64`.

use std::fmt;

/// The element type of an array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE-754 binary32.
    F32,
    /// IEEE-754 binary64.
    F64,
}

impl DType {
    /// Size of one element in bytes.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F64 => 8,
        }
    }

    /// The identifier used in the container format.
    pub(crate) fn code(self) -> u8 {
        match self {
            DType::F32 => 1,
            DType::F64 => 2,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(DType::F32),
            2 => Some(DType::F64),
            _ => None,
        }
    }

    /// Parses `f32`/`float32` or `f64`/`float64`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" | "f4" | "<f4" => Some(DType::F32),
            "f64" | "float64" | "f8" | "<f8" => Some(DType::F64),
            _ => None,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
        })
    }
}

/// A floating-point element type the codec works on.
///
/// The codec computes predictions and reconstructions in `f64` and rounds once, to the element
/// type, exactly as the decoder does; the error bound is then checked on that rounded value.
pub trait Element:
    Copy + Send + Sync + PartialEq + PartialOrd + fmt::Debug + bytemuck::Pod + 'static
{
    /// The dtype tag of this type.
    const DTYPE: DType;
    /// Number of bytes of one element.
    const BYTES: usize;

    /// Exact widening to `f64`.
    fn to_f64(self) -> f64;
    /// Rounds an `f64` to this type (round to nearest, ties to even).
    fn from_f64(v: f64) -> Self;
    /// The raw bits, zero-extended.
    fn to_bits64(self) -> u64;
    /// Builds a value from raw bits (the low `8 * BYTES` bits are used).
    fn from_bits64(bits: u64) -> Self;
    /// Whether the value is neither infinite nor NaN.
    fn is_finite(self) -> bool;
    /// Converts from little-endian storage order in place.
    fn from_le_in_place(values: &mut [Self]);
    /// Reverses the byte order of every value in place.
    fn swap_bytes_in_place(values: &mut [Self]);
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
    const BYTES: usize = 4;

    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    #[inline(always)]
    fn to_bits64(self) -> u64 {
        self.to_bits() as u64
    }
    #[inline(always)]
    fn from_bits64(bits: u64) -> Self {
        f32::from_bits(bits as u32)
    }
    #[inline(always)]
    fn is_finite(self) -> bool {
        f32::is_finite(self)
    }
    fn from_le_in_place(values: &mut [Self]) {
        if cfg!(target_endian = "big") {
            Self::swap_bytes_in_place(values);
        }
    }
    fn swap_bytes_in_place(values: &mut [Self]) {
        for v in values {
            *v = f32::from_bits(v.to_bits().swap_bytes());
        }
    }
}

impl Element for f64 {
    const DTYPE: DType = DType::F64;
    const BYTES: usize = 8;

    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v
    }
    #[inline(always)]
    fn to_bits64(self) -> u64 {
        self.to_bits()
    }
    #[inline(always)]
    fn from_bits64(bits: u64) -> Self {
        f64::from_bits(bits)
    }
    #[inline(always)]
    fn is_finite(self) -> bool {
        f64::is_finite(self)
    }
    fn from_le_in_place(values: &mut [Self]) {
        if cfg!(target_endian = "big") {
            Self::swap_bytes_in_place(values);
        }
    }
    fn swap_bytes_in_place(values: &mut [Self]) {
        for v in values {
            *v = f64::from_bits(v.to_bits().swap_bytes());
        }
    }
}

/// An owned block of elements of either type.
#[derive(Debug, Clone, PartialEq)]
pub enum ArrayData {
    /// `f32` values.
    F32(Vec<f32>),
    /// `f64` values.
    F64(Vec<f64>),
}

impl ArrayData {
    /// An empty buffer of the given type with room for `capacity` values.
    pub fn with_capacity(dtype: DType, capacity: usize) -> Self {
        match dtype {
            DType::F32 => ArrayData::F32(Vec::with_capacity(capacity)),
            DType::F64 => ArrayData::F64(Vec::with_capacity(capacity)),
        }
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            ArrayData::F32(_) => DType::F32,
            ArrayData::F64(_) => DType::F64,
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            ArrayData::F32(v) => v.len(),
            ArrayData::F64(v) => v.len(),
        }
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values as `T`, where `T` is their element type (`None` otherwise).
    pub fn values<T: Element>(&self) -> Option<&[T]> {
        (T::DTYPE == self.dtype()).then(|| match self {
            ArrayData::F32(v) => bytemuck::cast_slice(v),
            ArrayData::F64(v) => bytemuck::cast_slice(v),
        })
    }

    /// The values as little-endian bytes (a view on little-endian machines).
    pub fn as_le_bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        #[cfg(target_endian = "little")]
        {
            std::borrow::Cow::Borrowed(match self {
                ArrayData::F32(v) => bytemuck::cast_slice(v),
                ArrayData::F64(v) => bytemuck::cast_slice(v),
            })
        }
        #[cfg(target_endian = "big")]
        {
            let mut copy = self.clone();
            match &mut copy {
                ArrayData::F32(v) => f32::swap_bytes_in_place(v),
                ArrayData::F64(v) => f64::swap_bytes_in_place(v),
            }
            std::borrow::Cow::Owned(copy.as_le_bytes().into_owned())
        }
    }

    /// Clears the values, keeping the allocation.
    pub fn clear(&mut self) {
        match self {
            ArrayData::F32(v) => v.clear(),
            ArrayData::F64(v) => v.clear(),
        }
    }

    /// Values the buffer holds room for.
    pub fn capacity(&self) -> usize {
        match self {
            ArrayData::F32(v) => v.capacity(),
            ArrayData::F64(v) => v.capacity(),
        }
    }
}

/// Calls `$body` with `$v` bound to the typed vector inside an [`ArrayData`].
#[macro_export]
#[doc(hidden)]
macro_rules! with_array {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            $crate::ArrayData::F32($v) => $body,
            $crate::ArrayData::F64($v) => $body,
        }
    };
    // Two arrays of the same dtype (a mismatch is a bug).
    ($pair:expr, ($a:ident, $b:ident) => $body:expr) => {
        match $pair {
            ($crate::ArrayData::F32($a), $crate::ArrayData::F32($b)) => $body,
            ($crate::ArrayData::F64($a), $crate::ArrayData::F64($b)) => $body,
            _ => unreachable!("arrays of different dtypes"),
        }
    };
}

/// The f32 values of `col`, if its elements are f32.
pub(crate) fn as_f32<T: Element>(col: &[T]) -> Option<&[f32]> {
    (T::DTYPE == DType::F32).then(|| bytemuck::cast_slice(col))
}
