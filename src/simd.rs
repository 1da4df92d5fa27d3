//! Kernels compiled for wider vectors where the CPU has them, one convention for all: a
//! function's body is written once, `#[inline(always)]`, in plain Rust that vectorizes across
//! independent elements; the macros here define the function that calls it, compiled for AVX2
//! (or AVX-512, then AVX2) when the running CPU has the instructions, else for the baseline.
//! The same operations run lane by lane on every path (no fused multiply-add, no reassociated
//! sums), so every path gives the same bits: the tests compare each path with the baseline.
//!
//! ```ignore
//! with_avx2! {
//!     /// Docs of the function.
//!     fn histograms(codes: &[i32]) -> Counts = histograms_body;
//! }
//! with_avx2! { fn table_rows<T>(values: &[T], acc: (&mut [T], &mut [T], &mut [u32])) = table_rows_body; }
//! with_avx512! { fn plan(vals: &[i32], plan: &mut BinPlan) = plan_body; }
//! ```
//!
//! A generic parameter stands for an [`Element`](crate::element::Element) type.

/// Defines `fn $name(args) -> R` as `$body(args)` compiled for AVX2 where the CPU has it, else
/// for the baseline (see the [module](self)).
macro_rules! with_avx2 {
    ($($def:tt)*) => { $crate::simd::tiered!([("avx2", avx2)] $($def)*); };
}

/// [`with_avx2`] with an AVX-512 path first, where the CPU has AVX-512F.
macro_rules! with_avx512 {
    ($($def:tt)*) => { $crate::simd::tiered!([("avx512f", avx512), ("avx2", avx2)] $($def)*); };
}

/// The function of [`with_avx2`] and [`with_avx512`]: a [`tier`] for each `(feature, name)`,
/// the first the CPU has taken, else the baseline.
macro_rules! tiered {
    ([$(($feature:tt, $tier:ident)),*]
        $(#[$m:meta])* $vis:vis fn $name:ident $(<$t:ident>)? ($($arg:ident: $ty:ty),* $(,)?)
        $(-> $ret:ty)? = $body:path;) => {
        $(#[$m])*
        #[inline(always)]
        $vis fn $name $(<$t: $crate::element::Element>)? ($($arg: $ty),*) $(-> $ret)? {
            $crate::simd::tiered!(@tiers [$(($feature, $tier)),*]
                { $(<$t>)? ($($arg: $ty),*) $(-> $ret)? = $body });
            $body($($arg),*)
        }
    };
    (@tiers [$(($feature:tt, $tier:ident)),*] $sig:tt) => {
        $($crate::simd::tier!($feature, $tier $sig);)*
    };
}

/// Returns `$body(args)` compiled for `$feature` from the enclosing function, where the CPU
/// has that feature.
macro_rules! tier {
    ($feature:tt, $tier:ident { $(<$t:ident>)? ($($arg:ident: $ty:ty),*) $(-> $ret:ty)? = $body:path }) => {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!($feature) {
            #[target_feature(enable = $feature)]
            fn $tier $(<$t: $crate::element::Element>)? ($($arg: $ty),*) $(-> $ret)? {
                $body($($arg),*)
            }
            // SAFETY: the CPU supports the feature, checked just above.
            #[allow(unsafe_code)]
            return unsafe { $tier($($arg),*) };
        }
    };
}

pub(crate) use {tier, tiered, with_avx2, with_avx512};
