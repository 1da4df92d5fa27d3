//! The calls into the HDF5 C library that the `hdf5` crate does not offer safely: reading a
//! hyperslab into a buffer we own (reused from window to window, where the crate allocates a
//! new array per read), and writing one from a buffer, both with a memory type built at run
//! time (a compound of the file's field names, which no Rust type can name at compile time);
//! and a dataset's filter pipeline with all of each filter's parameters (the crate's
//! `Dataset::filters` reads at most 32 and panics on more, as baler's own filter stores).

use hdf5::{Dataset, Dataspace, Datatype, Hyperslab, Selection, SliceOrIndex};

use super::slab::Block;

/// The file and memory dataspaces of `block` of `ds`, once `len` bytes of `memtype` values
/// are checked to be exactly the block.
fn spaces(
    ds: &Dataset,
    memtype: &Datatype,
    block: &Block,
    len: usize,
) -> hdf5::Result<(Dataspace, Dataspace)> {
    let bytes = block.elements() as usize * memtype.size();
    if len != bytes {
        return Err(format!("a buffer of {len} bytes for a block of {bytes}").into());
    }
    let slab: Vec<SliceOrIndex> = block
        .start
        .iter()
        .zip(&block.count)
        .map(|(&start, &count)| SliceOrIndex::SliceCount {
            start: start as usize,
            step: 1,
            count: count as usize,
            block: 1,
        })
        .collect();
    let file = ds
        .space()?
        .select(Selection::Hyperslab(Hyperslab::from(slab)))?;
    // The memory space has the block's own shape: with the same shape on both sides the
    // library moves whole chunks and rows at once (a flat memory space against a 2-D file
    // selection makes it gather element by element, ten times slower).
    let dims: Vec<usize> = block.count.iter().map(|&c| c as usize).collect();
    Ok((file, Dataspace::try_new(dims)?))
}

/// The library's status code as a result, with its error stack.
fn checked(status: hdf5_sys::h5::herr_t) -> hdf5::Result<()> {
    if status < 0 {
        Err(hdf5::Error::query().unwrap_or_else(|e| e))
    } else {
        Ok(())
    }
}

/// Reads `block` of `ds` as `memtype` values (converted by the library: byte order, precision,
/// compound fields by name) into `out`, which must be exactly the block's size.
pub fn read_block(
    ds: &Dataset,
    memtype: &Datatype,
    block: &Block,
    out: &mut [u8],
) -> hdf5::Result<()> {
    let (file, mem) = spaces(ds, memtype, block, out.len())?;
    // SAFETY: `out` holds exactly as many bytes as the memory space selects values of
    // `memtype` (checked by `spaces`), so the library writes inside it; every id is a live
    // handle owned by the arguments and locals for the duration of the call; the crate's
    // global lock serializes the call with every other use of the library.
    #[allow(unsafe_code)]
    checked(hdf5::sync::sync(|| unsafe {
        hdf5_sys::h5d::H5Dread(
            ds.id(),
            memtype.id(),
            mem.id(),
            file.id(),
            hdf5_sys::h5p::H5P_DEFAULT,
            out.as_mut_ptr().cast(),
        )
    }))
}

/// Writes `data` (values of `memtype`, exactly the block's size) into `block` of `ds`.
pub fn write_block(
    ds: &Dataset,
    memtype: &Datatype,
    block: &Block,
    data: &[u8],
) -> hdf5::Result<()> {
    let (file, mem) = spaces(ds, memtype, block, data.len())?;
    // SAFETY: as in `read_block`; the library only reads `data`, whose size matches the
    // memory space and type.
    #[allow(unsafe_code)]
    checked(hdf5::sync::sync(|| unsafe {
        hdf5_sys::h5d::H5Dwrite(
            ds.id(),
            memtype.id(),
            mem.id(),
            file.id(),
            hdf5_sys::h5p::H5P_DEFAULT,
            data.as_ptr().cast(),
        )
    }))
}

/// The most parameters HDF5 hands out per filter (asked for more, `H5Pget_filter2` fails).
const MAX_PARAMETERS: usize = 256;

/// The filters of `ds`, in pipeline order: each one's id, its parameters (at most the first
/// 256: HDF5 hands no more), and their whole number.
pub fn filter_pipeline(ds: &Dataset) -> hdf5::Result<Vec<(i32, Vec<u32>, usize)>> {
    use hdf5_sys::{h5d, h5p};
    hdf5::sync::sync(|| {
        // SAFETY: every id is live during the calls (the creation property list is closed
        // before returning); H5Pget_filter2 writes at most `n` values into `cd` (none with 0)
        // and no name (a name buffer of length 0).
        #[allow(unsafe_code)]
        unsafe {
            let dcpl = h5d::H5Dget_create_plist(ds.id());
            if dcpl < 0 {
                return Err(hdf5::Error::query().unwrap_or_else(|e| e));
            }
            let result = (|| {
                let count = h5p::H5Pget_nfilters(dcpl);
                checked(count)?;
                let mut out = Vec::new();
                for i in 0..count as u32 {
                    let (mut flags, mut config) = (0u32, 0u32);
                    let mut n: usize = 0;
                    let id = h5p::H5Pget_filter2(
                        dcpl,
                        i,
                        &mut flags,
                        &mut n,
                        std::ptr::null_mut(),
                        0,
                        std::ptr::null_mut(),
                        &mut config,
                    );
                    checked(id)?;
                    let mut cd = vec![0u32; n.min(MAX_PARAMETERS)];
                    let mut m = cd.len();
                    checked(h5p::H5Pget_filter2(
                        dcpl,
                        i,
                        &mut flags,
                        &mut m,
                        cd.as_mut_ptr(),
                        0,
                        std::ptr::null_mut(),
                        &mut config,
                    ))?;
                    cd.truncate(m.min(MAX_PARAMETERS));
                    out.push((id, cd, n));
                }
                Ok(out)
            })();
            h5p::H5Pclose(dcpl);
            result
        }
    })
}
