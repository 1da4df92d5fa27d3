//! baler as an HDF5 filter plugin: `libh5baler.so`, loaded by HDF5 from `HDF5_PLUGIN_PATH`.
//!
//! Every HDF5 chunk of a dataset written through the filter is one self-contained baler
//! container, checksums included: a damaged chunk fails to decode and the read is an HDF5
//! error, never other values. The plugin links no HDF5 library: it finds the one that loaded it
//! at run time (`hdf5` module), so the same file serves Debian's HDF5 1.10 tools (`h5dump`,
//! `h5repack`) and h5py's bundled HDF5 1.14.
//!
//! # Filter id
//!
//! [`FILTER_ID`] = 47646 (`0xBA1E`), from the range 32768–65535 that The HDF Group leaves to
//! unregistered and testing filters ("not tracked or documented"; its registration page,
//! <https://support.hdfgroup.org/services/contributions.html>). The older comment in
//! `H5Zpublic.h` that 256–511 is for testing is out of date: registered filters live there
//! (LZO 305, BZIP2 307). An official id is had by writing to the HDF Helpdesk
//! (help@hdfgroup.org) with a contact, a short description of the filter and links to its
//! source and license; the id then changes here and in `FILTER_ID`, and files written with
//! 47646 stay readable only by a build that still answers to it.
//!
//! # `cd_values`
//!
//! All numbers are `u32` (HDF5's `cd_values`). The user gives a bound (and optionally
//! per-column bounds and a model); when a dataset is created, `set_local` prepends the element
//! size and the chunk's shape, and that stored form is what the file keeps and the filter reads.
//!
//! ## What the user passes
//!
//! | words | meaning |
//! |---|---|
//! | `mode` | bits 0–7: the bound's mode — 1 `abs`, 2 `rel`, 3 `lossless`, 4 `pwrel`, 5 `bits` (the codes of the container's BOUNDS section); +256: the value is an `f64` given by its bits (below); +512: a 2-D chunk is a field (an image), not a table |
//! | `a`, `b` | the value: `a × 10^-b` (`abs:1e-3` is `1, 3`; `abs:0.25` is `25, 2`; `abs:100` is `100, 0`); with +256, the `f64`'s bits, high word then low word; `bits:N` is `N, 0`; `lossless` may stop after `mode` or give `0, 0` |
//! | `K` | optional: the number of per-column bounds that follow (2-D chunks of a table only; the chunk's second dimension is the columns) |
//! | `K × (column, mode, a, b)` | column index (0-based) and its bound, as above (no +512) |
//! | `L`, `⌈L/4⌉ words` | optional, after `K` (write `K = 0` for none): a `baler train` model file of `L` bytes, packed four bytes to a word, little-endian, the last word padded with zeros |
//!
//! Examples (after `UD=47646,0,n,` on `h5repack`'s command line, or as h5py's
//! `compression_opts`):
//!
//! * `1,1,3`: `abs:1e-3`; `2,1,4`: `rel:1e-4`; `4,1,3`: `pwrel:1e-3`; `5,12,0`: `bits:12`;
//!   `3`: `lossless`;
//! * `514,1,3`: `rel:1e-3` on 2-D chunks taken as fields;
//! * `2,1,3,2,0,3,0,0,4,5,10,0`: a table at `rel:1e-3`, column 0 `lossless`, column 4
//!   `bits:10`.
//!
//! ## What the file stores (layout version 1)
//!
//! | words | meaning |
//! |---|---|
//! | `0xBA1E0001` | `0xBA1E` (no user form starts so) and the layout version, 1 |
//! | `size` | the element size: 4 (`f32`) or 8 (`f64`); little-endian IEEE floats only |
//! | `r`, `r` words | the chunk's rank and its dimensions, slowest first |
//! | the rest | the user's words, unchanged |
//!
//! A column index names a column of the *chunk*: HDF5 shows `set_local` the chunk's shape, not
//! the dataset's, so the filter cannot check that chunks hold whole rows; give per-column
//! bounds only with chunks as wide as the table. `set_local` finding a stored form (a dataset created from a copied property list) replaces
//! its first words and keeps the user's. A chunk is a table when its rank is 2 (unless +512),
//! else a field; a 2-D chunk's `rel` bounds are relative to each column's range in that chunk,
//! a field's to the chunk's range. HDF5's `cd_values` live in the dataset's object header,
//! whose messages are at most 64 KiB: a model adds its file size there (and, as baler stores
//! a container's model in its header, to every chunk too).
//!
//! # Errors
//!
//! `can_apply` refuses anything but little-endian 4- or 8-byte floats, `set_local` refuses
//! parameters that do not fit the chunk (a column out of range, per-column bounds on a field,
//! a bad model), each with a message on HDF5's error stack. The filter function returns 0 (an
//! HDF5 error) when a chunk fails to compress or to decode; no panic crosses into HDF5
//! (`catch_unwind` around every entry point).

pub mod codec;
mod hdf5;
pub mod params;

use std::ffi::{CStr, c_char, c_int, c_uint, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::hdf5::{Api, ErrKind, H5T_FLOAT, H5T_ORDER_LE, H5ZClass2, Herr, Hid, Hsize, Htri};

/// The filter id (see the crate docs).
pub const FILTER_ID: c_int = 47646;
/// `H5PL_TYPE_FILTER`.
const H5PL_TYPE_FILTER: c_int = 0;
/// `H5Z_FLAG_REVERSE`: decode.
const H5Z_FLAG_REVERSE: c_uint = 0x0100;

static CLASS: H5ZClass2 = H5ZClass2 {
    version: 1,
    id: FILTER_ID,
    encoder_present: 1,
    decoder_present: 1,
    name: c"baler: error-bounded compression of floats".as_ptr(),
    can_apply: Some(can_apply),
    set_local: Some(set_local),
    filter: Some(filter),
};

/// The plugin's type for HDF5's plugin loader: a filter.
#[unsafe(no_mangle)]
pub extern "C" fn H5PLget_plugin_type() -> c_int {
    H5PL_TYPE_FILTER
}

/// The filter's class for HDF5's plugin loader (or for `H5Zregister`).
#[unsafe(no_mangle)]
pub extern "C" fn H5PLget_plugin_info() -> *const c_void {
    &CLASS as *const H5ZClass2 as *const c_void
}

/// Registers the filter with the HDF5 library of this process (found as the plugin finds it:
/// see the `hdf5` module), for a program that links this crate in and writes or reads
/// baler-filtered datasets without `HDF5_PLUGIN_PATH` (the `baler` command line, tests).
/// Registering again is harmless. A program that uses HDF5 from several threads should call it
/// under its own HDF5 lock.
pub fn register() -> Result<(), String> {
    let api = hdf5::api().ok_or("no HDF5 library is loaded in this process")?;
    let reg = api
        .z_register
        .ok_or("the HDF5 library of this process has no H5Zregister")?;
    // SAFETY: H5Zregister(const void *cls) with the filter's class, a static that outlives the
    // library's use of it.
    let st = catch_unwind(|| unsafe { reg(H5PLget_plugin_info()) }).unwrap_or(-1);
    if st < 0 {
        return Err("H5Zregister refused the baler filter".into());
    }
    Ok(())
}

/// hdf5plugin's convention: use the HDF5 functions of the library `libname` (a path to
/// libhdf5, or to a library linked with it such as h5py's `h5z` module). Returns 1, or -1 when
/// the library cannot be opened or lacks a function the filter needs. Optional: without it the
/// plugin finds the HDF5 library that loaded it.
///
/// # Safety
/// `libname` must be null or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn init_filter(libname: *const c_char) -> c_int {
    if libname.is_null() {
        return -1;
    }
    // SAFETY: the caller's promise: a NUL-terminated string.
    let name = unsafe { CStr::from_ptr(libname) };
    match catch_unwind(|| hdf5::init_from(name)) {
        Ok(true) => 1,
        _ => -1,
    }
}

/// Runs `f`, turning a panic into `on_panic` (and an HDF5 error when HDF5 was found).
fn guarded<T>(func: &CStr, on_panic: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => {
            if let Some(api) = hdf5::api() {
                api.push_error(
                    ErrKind::CantFilter,
                    func,
                    "internal error (a panic, caught)",
                );
            }
            on_panic
        }
    }
}

/// Checks the dataset's type: little-endian IEEE floats of 4 or 8 bytes.
fn type_error(api: &Api, type_id: Hid) -> Option<String> {
    // SAFETY: type_id is the datatype id HDF5 passed to the callback; these calls only read it.
    let (class, size, order) = unsafe {
        (
            (api.t_get_class)(type_id),
            (api.t_get_size)(type_id),
            (api.t_get_order)(type_id),
        )
    };
    if class != H5T_FLOAT || !(size == 4 || size == 8) {
        Some(format!(
            "baler compresses 32- and 64-bit floats; this dataset's type is of class {class} \
             and {size} bytes"
        ))
    } else if order != H5T_ORDER_LE {
        Some("baler compresses little-endian floats; this dataset's type is big-endian".into())
    } else {
        None
    }
}

unsafe extern "C" fn can_apply(_dcpl: Hid, type_id: Hid, _space: Hid) -> Htri {
    guarded(c"can_apply", -1, || {
        let Some(api) = hdf5::api() else {
            return -1;
        };
        match type_error(&api, type_id) {
            None => 1,
            Some(msg) => {
                api.push_error(ErrKind::BadType, c"can_apply", &msg);
                0
            }
        }
    })
}

/// The filter's flags in `dcpl`, its words (at most [`params::MAX_READ`] of them: HDF5 hands
/// no more), their whole number, and the chunk's dims.
fn current(api: &Api, dcpl: Hid) -> Result<(c_uint, Vec<u32>, usize, Vec<u64>), String> {
    let mut flags: c_uint = 0;
    let mut n: usize = 0;
    let mut config: c_uint = 0;
    // SAFETY: dcpl is the property list HDF5 passed; with room for 0 values HDF5 writes only
    // the flags, the count and the configuration.
    let st = unsafe {
        (api.p_get_filter_by_id2)(
            dcpl,
            FILTER_ID,
            &mut flags,
            &mut n,
            std::ptr::null_mut(),
            0,
            std::ptr::null_mut(),
            &mut config,
        )
    };
    if st < 0 {
        return Err("the filter is not in the dataset's property list".into());
    }
    let mut values = vec![0u32; n.min(params::MAX_READ)];
    let mut m = values.len();
    // SAFETY: `values` has room for the `m` values HDF5 may write.
    let st = unsafe {
        (api.p_get_filter_by_id2)(
            dcpl,
            FILTER_ID,
            &mut flags,
            &mut m,
            values.as_mut_ptr(),
            0,
            std::ptr::null_mut(),
            &mut config,
        )
    };
    if st < 0 || m != n {
        return Err("cannot read the filter's parameters".into());
    }
    values.truncate(params::MAX_READ);
    let mut dims = [0 as Hsize; params::MAX_RANK];
    // SAFETY: `dims` has room for H5S_MAX_RANK (32) dimensions, the most HDF5 writes.
    let rank = unsafe { (api.p_get_chunk)(dcpl, params::MAX_RANK as c_int, dims.as_mut_ptr()) };
    if rank < 1 {
        return Err("the dataset is not chunked (HDF5 filters need chunks)".into());
    }
    Ok((flags, values, n, dims[..rank as usize].to_vec()))
}

unsafe extern "C" fn set_local(dcpl: Hid, type_id: Hid, _space: Hid) -> Herr {
    guarded(c"set_local", -1, || {
        let Some(api) = hdf5::api() else {
            return -1;
        };
        let result = (|| {
            if let Some(msg) = type_error(&api, type_id) {
                return Err((ErrKind::BadType, msg));
            }
            // SAFETY: as in type_error.
            let size = unsafe { (api.t_get_size)(type_id) };
            let (flags, user, total, dims) =
                current(&api, dcpl).map_err(|e| (ErrKind::BadValue, e))?;
            if total > user.len() {
                // More words than HDF5 hands a filter here (a large model): only a completed
                // form for this very element size and chunk shape is taken as it is (the
                // filter function parses all of it at the first chunk).
                return if params::is_stored_for(&user, size, &dims) {
                    Ok(())
                } else {
                    Err((
                        ErrKind::BadValue,
                        format!(
                            "{total} parameters: HDF5 hands a filter at most {} when a dataset is \
                             created, so a model this large must come in the completed form \
                             (`baler h5repack --model` writes it)",
                            params::MAX_READ
                        ),
                    ))
                };
            }
            let words = params::stored(&user, size, &dims).map_err(|e| (ErrKind::BadValue, e))?;
            // SAFETY: `words` holds the `words.len()` values passed.
            let st = unsafe {
                (api.p_modify_filter)(dcpl, FILTER_ID, flags, words.len(), words.as_ptr())
            };
            if st < 0 {
                return Err((
                    ErrKind::BadValue,
                    "cannot store the filter's parameters".into(),
                ));
            }
            Ok(())
        })();
        match result {
            Ok(()) => 0,
            Err((kind, msg)) => {
                api.push_error(kind, c"set_local", &msg);
                -1
            }
        }
    })
}

/// The filter: compresses a chunk (forward) or decodes one (`H5Z_FLAG_REVERSE`), replacing
/// `*buf` with a new buffer from HDF5's allocator. Returns the new valid size, or 0 on failure.
unsafe extern "C" fn filter(
    flags: c_uint,
    cd_nelmts: usize,
    cd_values: *const c_uint,
    nbytes: usize,
    buf_size: *mut usize,
    buf: *mut *mut c_void,
) -> usize {
    guarded(c"filter", 0, || {
        let api = hdf5::api();
        let fail = |msg: String| {
            if let Some(api) = &api {
                api.push_error(ErrKind::CantFilter, c"filter", &msg);
            }
            0
        };
        if buf.is_null() || buf_size.is_null() || (cd_nelmts > 0 && cd_values.is_null()) {
            return fail("null buffer or parameters".into());
        }
        let words: &[u32] = if cd_nelmts == 0 {
            &[]
        } else {
            // SAFETY: HDF5 passes cd_nelmts values at cd_values, alive during the call.
            unsafe { std::slice::from_raw_parts(cd_values, cd_nelmts) }
        };
        let p = match params::parse_stored(words) {
            Ok(p) => p,
            Err(e) => return fail(e),
        };
        // SAFETY: *buf holds at least nbytes valid bytes (HDF5's filter contract) and is not
        // touched by anyone else during the call.
        let input = unsafe {
            if (*buf).is_null() {
                return fail("null buffer".into());
            }
            std::slice::from_raw_parts(*buf as *const u8, nbytes)
        };
        let out = if flags & H5Z_FLAG_REVERSE == 0 {
            codec::compress_chunk(&p, input)
        } else {
            let mut out = Vec::new();
            codec::decompress_chunk(&p, input, &mut out).map(|()| out)
        };
        let out = match out {
            Ok(out) => out,
            Err(e) => return fail(e),
        };
        let new = hdf5::allocate(api.as_ref(), out.len());
        if new.is_null() {
            return fail(format!("cannot allocate {} bytes", out.len()));
        }
        // SAFETY: `new` has room for out.len() bytes and does not overlap `out`; the old buffer
        // came from HDF5's allocator and is replaced by the new one, which HDF5 will free.
        unsafe {
            std::ptr::copy_nonoverlapping(out.as_ptr(), new as *mut u8, out.len());
            hdf5::free(api.as_ref(), *buf);
            *buf = new;
            *buf_size = out.len().max(1);
        }
        out.len()
    })
}
