//! The few HDF5 C types the plugin declares itself, and the HDF5 functions it resolves at run
//! time from the HDF5 library that loaded it.
//!
//! The plugin links no HDF5: the same file serves Debian's HDF5 1.10 tools and h5py's bundled
//! 1.14, which Python loads `RTLD_LOCAL`, out of reach of a plain `dlsym(RTLD_DEFAULT, …)`. The
//! library is found, in this order:
//!
//! 1. the library named to [`init_filter`](crate::init_filter) (hdf5plugin's convention: its
//!    Python side calls `init_filter(h5py.h5z.__file__)` before registering a filter);
//! 2. the global scope (`dlsym(RTLD_DEFAULT, "H5Pget_chunk")`): a program linked with HDF5,
//!    such as `h5dump` or `h5repack`;
//! 3. the libraries already loaded in the process (`dl_iterate_phdr`), the first whose file
//!    name starts with `libhdf5` and is no high-level, C++ or Fortran library, reopened with
//!    `RTLD_NOLOAD` (h5py's `h5py.libs/libhdf5-….so`).
//!
//! A process holding two HDF5 libraries at once should call `init_filter` with the one it
//! uses.

use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};
use std::sync::RwLock;

/// HDF5's object identifier (`int64_t` since HDF5 1.10).
pub type Hid = i64;
/// HDF5's status return (negative: failure).
pub type Herr = c_int;
/// HDF5's tri-state return (negative: failure, 0: false, positive: true).
pub type Htri = c_int;
/// HDF5's dimension size.
pub type Hsize = u64;
/// `H5E_DEFAULT`: the default error stack.
const H5E_DEFAULT: Hid = 0;
/// `H5T_FLOAT` of `H5T_class_t`.
pub const H5T_FLOAT: c_int = 1;
/// `H5T_ORDER_LE` of `H5T_order_t`.
pub const H5T_ORDER_LE: c_int = 0;

/// `H5Z_can_apply_func_t`.
pub type CanApply = unsafe extern "C" fn(Hid, Hid, Hid) -> Htri;
/// `H5Z_set_local_func_t`.
pub type SetLocal = unsafe extern "C" fn(Hid, Hid, Hid) -> Herr;
/// `H5Z_func_t`.
pub type FilterFn = unsafe extern "C" fn(
    c_uint,
    usize,
    *const c_uint,
    usize,
    *mut usize,
    *mut *mut c_void,
) -> usize;

/// `H5Z_class2_t`, as `H5PLget_plugin_info` hands it to HDF5.
#[repr(C)]
pub struct H5ZClass2 {
    /// `H5Z_CLASS_T_VERS` (1).
    pub version: c_int,
    /// The filter id.
    pub id: c_int,
    /// Whether the filter can encode.
    pub encoder_present: c_uint,
    /// Whether the filter can decode.
    pub decoder_present: c_uint,
    /// A name for messages.
    pub name: *const c_char,
    /// Checks the dataset's type before creation.
    pub can_apply: Option<CanApply>,
    /// Completes the parameters at creation.
    pub set_local: Option<SetLocal>,
    /// The filter itself.
    pub filter: Option<FilterFn>,
}

// SAFETY: the one instance is an immutable static whose pointers point to static data (a
// string literal and functions); nothing writes through them.
unsafe impl Sync for H5ZClass2 {}

type PGetChunk = unsafe extern "C" fn(Hid, c_int, *mut Hsize) -> c_int;
type TGetSize = unsafe extern "C" fn(Hid) -> usize;
type TGetInt = unsafe extern "C" fn(Hid) -> c_int;
type PGetFilterById2 = unsafe extern "C" fn(
    Hid,
    c_int,
    *mut c_uint,
    *mut usize,
    *mut c_uint,
    usize,
    *mut c_char,
    *mut c_uint,
) -> Herr;
type PModifyFilter = unsafe extern "C" fn(Hid, c_int, c_uint, usize, *const c_uint) -> Herr;
type Allocate = unsafe extern "C" fn(usize, bool) -> *mut c_void;
/// `H5Zregister`.
pub type ZRegister = unsafe extern "C" fn(*const c_void) -> Herr;
type Free = unsafe extern "C" fn(*mut c_void) -> Herr;
type EPush2 = unsafe extern "C" fn(
    Hid,
    *const c_char,
    *const c_char,
    c_uint,
    Hid,
    Hid,
    Hid,
    *const c_char,
    ...
) -> Herr;

/// The HDF5 functions and error ids the plugin uses, from one library.
#[derive(Clone, Copy)]
pub struct Api {
    pub p_get_chunk: PGetChunk,
    pub t_get_size: TGetSize,
    pub t_get_class: TGetInt,
    pub t_get_order: TGetInt,
    pub p_get_filter_by_id2: PGetFilterById2,
    pub p_modify_filter: PModifyFilter,
    /// `H5Zregister`, for [`register`](crate::register) (a program that links the filter in).
    pub z_register: Option<ZRegister>,
    /// `H5allocate_memory` and `H5free_memory` (HDF5 ≥ 1.8.15), or `malloc` and `free`.
    allocate: Option<Allocate>,
    free: Option<Free>,
    e_push2: Option<EPush2>,
    /// Addresses of the error class and message ids (`H5E_ERR_CLS_g`, `H5E_PLINE_g`,
    /// `H5E_BADTYPE_g`, `H5E_BADVALUE_g`, `H5E_CANTFILTER_g`), read when an error is pushed
    /// (HDF5 sets them when it initializes).
    err_ids: Option<[usize; 5]>,
}

/// Which minor error an error is.
#[derive(Clone, Copy)]
pub enum ErrKind {
    /// The dataset's type is not one baler compresses.
    BadType,
    /// The parameters are wrong.
    BadValue,
    /// Compressing or decoding a chunk failed.
    CantFilter,
}

/// The library named to `init_filter`, or found the first time one was needed.
static API: RwLock<Option<Api>> = RwLock::new(None);

/// A symbol of `handle` as a function pointer of type `F`, if present.
///
/// # Safety
/// `F` must be the C function pointer type of the symbol `name`.
unsafe fn sym<F: Copy>(handle: *mut c_void, name: &CStr) -> Option<F> {
    // SAFETY: dlsym takes any handle dlopen returned (or RTLD_DEFAULT) and a C string.
    let p = unsafe { libc::dlsym(handle, name.as_ptr()) };
    if p.is_null() {
        return None;
    }
    debug_assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<*mut c_void>());
    // SAFETY: F is a function pointer type (the caller's promise), the size of a data pointer
    // on the platforms dlsym exists on, and p is the address of that function.
    Some(unsafe { std::mem::transmute_copy::<*mut c_void, F>(&p) })
}

/// The functions of the HDF5 library `handle` (or the global scope), if it has them all.
fn resolve(handle: *mut c_void) -> Option<Api> {
    // SAFETY: each type below is the C prototype of the named HDF5 function (H5Ppublic.h,
    // H5Tpublic.h, H5public.h, H5Epublic.h of HDF5 1.10 to 1.14).
    unsafe {
        let data = |name: &CStr| {
            let p = libc::dlsym(handle, name.as_ptr());
            (!p.is_null()).then_some(p as usize)
        };
        let err_ids = (|| {
            Some([
                data(c"H5E_ERR_CLS_g")?,
                data(c"H5E_PLINE_g")?,
                data(c"H5E_BADTYPE_g")?,
                data(c"H5E_BADVALUE_g")?,
                data(c"H5E_CANTFILTER_g")?,
            ])
        })();
        let allocate = sym::<Allocate>(handle, c"H5allocate_memory");
        let free = sym::<Free>(handle, c"H5free_memory");
        Some(Api {
            p_get_chunk: sym(handle, c"H5Pget_chunk")?,
            t_get_size: sym(handle, c"H5Tget_size")?,
            t_get_class: sym(handle, c"H5Tget_class")?,
            t_get_order: sym(handle, c"H5Tget_order")?,
            p_get_filter_by_id2: sym(handle, c"H5Pget_filter_by_id2")?,
            p_modify_filter: sym(handle, c"H5Pmodify_filter")?,
            z_register: sym(handle, c"H5Zregister"),
            // Both or neither: a buffer must be freed by the allocator that made it.
            allocate: allocate.and(free).and(allocate),
            free: allocate.and(free),
            e_push2: sym(handle, c"H5Epush2"),
            err_ids,
        })
    }
}

/// Uses the HDF5 library `libname` (or a library that depends on it); true if it has the
/// functions the plugin needs.
pub fn init_from(libname: &CStr) -> bool {
    // SAFETY: dlopen takes a C string; the handle is kept for the life of the process (never
    // closed), as the function pointers taken from it are.
    let handle = unsafe { libc::dlopen(libname.as_ptr(), libc::RTLD_LAZY | libc::RTLD_LOCAL) };
    if handle.is_null() {
        return false;
    }
    match resolve(handle) {
        Some(api) => {
            *API.write().unwrap_or_else(|e| e.into_inner()) = Some(api);
            true
        }
        None => false,
    }
}

/// The paths of the loaded libraries whose file name says HDF5's C library.
fn loaded_hdf5_paths() -> Vec<CString> {
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: dl_iterate_phdr passes a valid info for the duration of the call, and data is
        // the &mut Vec handed to it below, alive for the whole iteration.
        let (info, out) = unsafe { (&*info, &mut *(data as *mut Vec<CString>)) };
        if info.dlpi_name.is_null() {
            return 0;
        }
        // SAFETY: dlpi_name is a NUL-terminated path (possibly empty for the executable).
        let path = unsafe { CStr::from_ptr(info.dlpi_name) };
        let bytes = path.to_bytes();
        let file = bytes.rsplit(|&b| b == b'/').next().unwrap_or(bytes);
        let file = String::from_utf8_lossy(file);
        let is_c_lib = file.starts_with("libhdf5")
            && !["_hl", "hl_", "cpp", "fortran", "h5baler"]
                .iter()
                .any(|s| file.contains(s));
        if is_c_lib {
            out.push(path.to_owned());
        }
        0
    }
    let mut out: Vec<CString> = Vec::new();
    // SAFETY: the callback only reads what dl_iterate_phdr gives it and writes to `out`.
    unsafe { libc::dl_iterate_phdr(Some(each), &mut out as *mut Vec<CString> as *mut c_void) };
    out
}

/// Finds the HDF5 library (see the module docs).
fn discover() -> Option<Api> {
    if let Some(api) = resolve(libc::RTLD_DEFAULT) {
        return Some(api);
    }
    for path in loaded_hdf5_paths() {
        // SAFETY: RTLD_NOLOAD only returns a handle to a library already loaded (taking a
        // reference that is never dropped); it loads nothing.
        let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOLOAD | libc::RTLD_NOW) };
        if !handle.is_null()
            && let Some(api) = resolve(handle)
        {
            return Some(api);
        }
    }
    None
}

/// The HDF5 functions, found on first use.
pub fn api() -> Option<Api> {
    if let Some(api) = *API.read().unwrap_or_else(|e| e.into_inner()) {
        return Some(api);
    }
    let mut slot = API.write().unwrap_or_else(|e| e.into_inner());
    if slot.is_none() {
        *slot = discover();
    }
    *slot
}

impl Api {
    /// Pushes an error on HDF5's default stack (if HDF5's error functions were found).
    pub fn push_error(&self, kind: ErrKind, func: &CStr, msg: &str) {
        let (Some(push), Some(ids)) = (self.e_push2, self.err_ids) else {
            return;
        };
        let msg =
            CString::new(format!("baler filter: {msg}").replace('\0', " ")).unwrap_or_default();
        let minor = match kind {
            ErrKind::BadType => ids[2],
            ErrKind::BadValue => ids[3],
            ErrKind::CantFilter => ids[4],
        };
        // SAFETY: the addresses are HDF5's exported hid_t variables (found by dlsym in the
        // library that is running us, so alive); H5Epush2 is called with its prototype, the
        // message passed as an argument to a constant "%s" format.
        unsafe {
            let id = |a: usize| std::ptr::read_volatile(a as *const Hid);
            push(
                H5E_DEFAULT,
                c"hdf5-filter/src/lib.rs".as_ptr(),
                func.as_ptr(),
                line!(),
                id(ids[0]),
                id(ids[1]),
                id(minor),
                c"%s".as_ptr(),
                msg.as_ptr(),
            );
        }
    }
}

/// Allocates `n` bytes for HDF5 to own (with HDF5's allocator when found).
pub fn allocate(api: Option<&Api>, n: usize) -> *mut c_void {
    match api.and_then(|a| a.allocate) {
        // SAFETY: H5allocate_memory(size, clear) returns a buffer HDF5 frees, or null.
        Some(alloc) => unsafe { alloc(n.max(1), false) },
        // SAFETY: malloc of a non-zero size returns a buffer or null.
        None => unsafe { libc::malloc(n.max(1)) },
    }
}

/// Frees a buffer HDF5 gave the filter (with the allocator HDF5 uses).
///
/// # Safety
/// `p` must come from HDF5's allocator (or [`allocate`]) and not be used afterwards.
pub unsafe fn free(api: Option<&Api>, p: *mut c_void) {
    match api.and_then(|a| a.free) {
        // SAFETY: the caller's promise: p is HDF5's buffer.
        Some(free) => unsafe {
            free(p);
        },
        // SAFETY: without H5free_memory, HDF5's allocator is malloc (the caller's promise).
        None => unsafe { libc::free(p) },
    }
}
