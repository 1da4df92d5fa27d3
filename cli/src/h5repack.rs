//! `baler h5repack IN.h5 OUT.h5 --bound ...`: every float32/float64 dataset of an HDF5 file
//! rewritten through baler's HDF5 filter (id 47646, `hdf5-filter/`), everything else kept.
//!
//! The filter is linked in and registered with the process's HDF5 library, so no
//! `HDF5_PLUGIN_PATH` is needed here (readers of the output need the plugin). Groups are
//! recreated with their creation properties, attributes copied value for value (the root's,
//! the groups' and the datasets'), soft and external links recreated, a second hard link to an
//! object already copied linked again, and every other object (integer, compound, scalar or
//! empty datasets, named datatypes) copied as it is by `H5Ocopy`. A float dataset becomes a
//! chunked little-endian dataset of the same type and shape: chunks of about `--chunk-size`
//! bytes of whole rows ([`chunk_shape`]), the filter's parameters built from the bound options
//! of `compress` (the same parser: [`bounds_from`](super::commands::bounds_from)), `rel`
//! resolved to `abs` on the whole dataset's range (per column of a table), as `baler compress`
//! resolves it, since the filter's own `rel` would be relative to each chunk. Values are copied
//! in blocks of whole chunks (about 16 MiB), so every chunk is written, and compressed, once,
//! and memory stays bounded. The output is written under a temporary name and renamed when
//! complete.

use anyhow::Result;

use super::args::H5RepackArgs;

/// Target bytes of one block of values read and written at once (whole chunks).
#[cfg_attr(not(feature = "hdf5"), allow(dead_code))]
const BLOCK_BYTES: u64 = 16 << 20;

/// The chunk shape of a converted dataset and the axis it is split along: a 2-D table or a
/// 1-D series in about `target` bytes of whole rows (values), the chunks of a series or a
/// table as equal as the length allows (`⌈rows / ⌈bytes / target⌉⌉`), so the last one is
/// nearly full; a field of higher rank in slabs along its first axis the same way, a slab of
/// more than twice `target` split along the next axis (recursively).
#[cfg_attr(not(feature = "hdf5"), allow(dead_code))]
pub fn chunk_shape(shape: &[u64], elem: u64, target: u64) -> (Vec<u64>, usize) {
    let rank = shape.len();
    let mut chunk = shape.to_vec();
    let mut axis = 0;
    loop {
        let slab: u64 = shape[axis + 1..]
            .iter()
            .fold(elem, |a, &d| a.saturating_mul(d.max(1)));
        let rows = shape[axis].max(1);
        // Tables (2-D) keep whole rows whatever their width; fields split a large slab.
        let splits_further = rank > 2 && axis + 1 < rank && slab > target.saturating_mul(2);
        if splits_further {
            chunk[axis] = 1;
            axis += 1;
            continue;
        }
        let per_chunk = (target / slab.max(1)).max(1);
        let chunks = rows.div_ceil(per_chunk);
        chunk[axis] = rows.div_ceil(chunks).max(1);
        return (chunk, axis);
    }
}

/// `baler h5repack`.
#[cfg(not(feature = "hdf5"))]
pub fn h5repack(args: H5RepackArgs) -> Result<()> {
    anyhow::bail!(
        "{}: `baler h5repack` needs HDF5 support, and this baler was built without it; rebuild \
         it with the default features",
        args.input
    )
}

/// `baler h5repack`.
#[cfg(feature = "hdf5")]
pub fn h5repack(args: H5RepackArgs) -> Result<()> {
    imp::h5repack(args)
}

/// Registers baler's filter with this process's HDF5 library (for writing, and for reading
/// baler-filtered datasets without `HDF5_PLUGIN_PATH`).
#[cfg(feature = "hdf5")]
pub fn register_filter() -> Result<()> {
    hdf5::sync::sync(h5baler::register).map_err(|e| anyhow::anyhow!("baler's HDF5 filter: {e}"))
}

#[cfg(feature = "hdf5")]
mod imp {
    use std::ffi::CString;
    use std::path::Path;
    use std::time::Instant;

    use anyhow::{Context, Result, anyhow, bail};
    use baler::io::hdf5::{Content, DatasetInfo};
    use baler::normalize::{ColumnStats, StatsAccumulator};
    use baler::{Bound, BoundSpec, Bounds, ColumnRef, DType, Element};
    use hdf5::{Dataset, Group, H5Type, LinkType, LocationToken, LocationType};
    use hdf5_sys::h5::hsize_t;
    use hdf5_sys::h5i::hid_t;

    use super::super::args::H5RepackArgs;
    use super::super::progress::size;
    use super::{BLOCK_BYTES, chunk_shape};

    /// The filter id.
    const FILTER: i32 = h5baler::FILTER_ID;

    /// What is decided for one float dataset before anything is written.
    struct Planned {
        path: String,
        dtype: DType,
        shape: Vec<u64>,
        chunk: Vec<u64>,
        axis: usize,
        /// The filter's user words.
        words: Vec<u32>,
        /// The completed form (what `set_local` would store), written into the file: HDF5
        /// hands `set_local` at most 256 words, fewer than a large model takes.
        stored: Vec<u32>,
        /// The bounds, in words, for the summary.
        bounds: String,
    }

    /// What was written for one dataset.
    struct Done {
        before: u64,
        after: u64,
    }

    /// The HDF5 error of a failed call, with its stack.
    fn h5_error() -> anyhow::Error {
        match hdf5::Error::query() {
            Ok(e) | Err(e) => anyhow!("{e}"),
        }
    }

    /// A raw HDF5 id closed when dropped.
    struct Id(hid_t, unsafe extern "C" fn(hid_t) -> hdf5_sys::h5::herr_t);

    impl Id {
        /// Takes `id`, or the library's error when it is negative.
        fn new(
            id: hid_t,
            close: unsafe extern "C" fn(hid_t) -> hdf5_sys::h5::herr_t,
        ) -> Result<Self> {
            if id < 0 {
                Err(h5_error())
            } else {
                Ok(Id(id, close))
            }
        }
    }

    impl Drop for Id {
        fn drop(&mut self) {
            // SAFETY: the id was returned by the library and is closed once, here.
            unsafe {
                (self.1)(self.0);
            }
        }
    }

    fn check(status: hdf5_sys::h5::herr_t) -> Result<()> {
        if status < 0 { Err(h5_error()) } else { Ok(()) }
    }

    fn cstr(s: &str) -> Result<CString> {
        CString::new(s).map_err(|_| anyhow!("the name '{s}' holds a NUL byte"))
    }

    pub fn h5repack(args: H5RepackArgs) -> Result<()> {
        let started = Instant::now();
        let (input, output) = (args.input.as_str(), Path::new(&args.output));
        let in_path = Path::new(input);
        if !in_path.exists() {
            bail!("cannot open {input}: No such file or directory");
        }
        baler::io::output::refuse_input_as_output(in_path, output)?;
        let bounds = super::super::commands::bounds_from(&args.bound_args)?;
        let model = match &args.model {
            None => None,
            Some(p) => {
                let bytes = std::fs::read(p).map_err(|e| {
                    anyhow!("cannot read {}: {}", p.display(), baler::io::io_reason(&e))
                })?;
                let m = baler::model::Model::from_file_bytes(&bytes)
                    .map_err(|e| anyhow!("{}: {e}", p.display()))?;
                Some((bytes, m.columns.len(), p.display().to_string()))
            }
        };
        let reserved = if args.print_h5repack {
            None
        } else {
            Some(baler::io::output::OutputPath::new(output, args.force)?)
        };
        super::register_filter()?;

        let all = baler::io::hdf5::list_datasets(in_path, input)?;
        // (A dataset reached through a soft link as well is listed under one name twice.)
        let mut floats: Vec<&DatasetInfo> = all.iter().filter(|d| convertible(d)).collect();
        floats.dedup_by(|a, b| a.path == b.path);
        if floats.is_empty() {
            let held: Vec<String> = all
                .iter()
                .take(20)
                .map(|d| format!("\n    {}  ({})", d.path, d.summary()))
                .collect();
            bail!(
                "{input}: no float32 or float64 dataset to convert (h5repack converts datasets \
                 of floats with at least one value and rank 1 or more; compound datasets are \
                 copied as they are){}",
                if held.is_empty() {
                    ": the file holds no dataset".to_string()
                } else {
                    format!("; it holds:{}", held.concat())
                }
            );
        }
        let file = open_in(in_path, input)?;
        let mut used = vec![false; bounds.overrides.len()];
        let mut model_used = false;
        let mut plans = Vec::new();
        for d in &floats {
            let name = format!("{input}:{}", d.path);
            let ds = file
                .dataset(&d.path)
                .map_err(|e| anyhow!("{name}: cannot open it: {e}"))?;
            let plan = plan_dataset(
                &ds,
                d,
                &bounds,
                &mut used,
                model.as_ref().map(|(b, c, _)| (b.as_slice(), *c)),
                &mut model_used,
                args.chunk_size as u64,
            )
            .with_context(|| name.clone())?;
            plans.push(plan);
        }
        for ((r, spec), used) in bounds.overrides.iter().zip(&used) {
            if !used && !matches!(r, ColumnRef::Pattern(_)) {
                let tables: Vec<String> = plans
                    .iter()
                    .filter(|p| p.shape.len() == 2)
                    .map(|p| {
                        let ds = file.dataset(&p.path).ok();
                        let names = ds
                            .and_then(|ds| baler::io::hdf5::column_names(&ds))
                            .map(|(_, n)| format!(": {}", n.join(", ")))
                            .unwrap_or_default();
                        format!("\n    {} ({} columns{names})", p.path, p.shape[1])
                    })
                    .collect();
                bail!(
                    "{input}: the column bound {r}={spec} matches no column of any table \
                     (2-D float dataset){}",
                    if tables.is_empty() {
                        "; the file has no table".to_string()
                    } else {
                        format!(" of the file:{}", tables.concat())
                    }
                );
            }
        }
        if let Some((_, cols, path)) = &model
            && !model_used
        {
            bail!(
                "{path}: the model is for tables of {cols} columns; {input} has no 2-D float \
                 dataset of {cols} columns"
            );
        }
        let command = h5repack_command(&plans, input, &args.output);
        let Some(reserved) = reserved else {
            println!("{command}");
            if let Some(note) = tool_note(&plans) {
                eprintln!("{note}");
            }
            return Ok(());
        };

        let out = hdf5::File::create(reserved.tmp())
            .map_err(|e| anyhow!("cannot create {}: {e}", output.display()))?;
        let out_name = output.display().to_string();
        copy_attributes(&file, out.id())
            .with_context(|| format!("{input}:/: copying the root group's attributes"))?;
        let mut ctx = Walk {
            input,
            plans: &plans,
            done: vec![None; plans.len()],
            seen: Vec::new(),
            copied: 0,
        };
        ctx.group(&file, &out, "")?;
        let done = std::mem::take(&mut ctx.done);
        let copied = ctx.copied;
        drop(ctx);
        drop(file);
        out.close()
            .map_err(|e| anyhow!("{out_name}: closing it: {e}"))?;
        reserved
            .commit()
            .with_context(|| format!("writing {out_name}"))?;
        if !args.quiet {
            summary(&plans, &done, input, &out_name, copied, started, &command);
        }
        Ok(())
    }

    /// Whether h5repack converts the dataset: floats (not compound) of rank ≥ 1 with values.
    fn convertible(d: &DatasetInfo) -> bool {
        matches!(d.content, Content::Floats(_))
            && !d.shape.is_empty()
            && d.shape.iter().all(|&n| n > 0)
    }

    fn open_in(path: &Path, name: &str) -> Result<hdf5::File> {
        hdf5::File::open(path).map_err(|e| anyhow!("{name}: cannot open it as an HDF5 file: {e}"))
    }

    /// Opens dataset `name` of `group` with a chunk cache of `cache` bytes (so a source chunked
    /// otherwise than the output is decompressed about once).
    fn open_cached(group: &Group, name: &str, cache: usize) -> Result<Dataset> {
        let cname = cstr(name)?;
        hdf5::sync::sync(|| {
            // SAFETY: plain HDF5 calls on live ids; every id made here is closed (the
            // dataset's by the crate's handle).
            unsafe {
                let dapl = Id::new(
                    hdf5_sys::h5p::H5Pcreate(*hdf5::globals::H5P_DATASET_ACCESS),
                    hdf5_sys::h5p::H5Pclose,
                )?;
                check(hdf5_sys::h5p::H5Pset_chunk_cache(
                    dapl.0, 12_421, cache, 1.0,
                ))?;
                let id = hdf5_sys::h5d::H5Dopen2(group.id(), cname.as_ptr(), dapl.0);
                if id < 0 {
                    return Err(h5_error());
                }
                hdf5::from_id::<Dataset>(id).map_err(|e| anyhow!("{e}"))
            }
        })
    }

    /// Decides chunks and filter parameters of one float dataset (reading it once for its
    /// ranges when a `rel` bound needs them).
    fn plan_dataset(
        ds: &Dataset,
        d: &DatasetInfo,
        bounds: &Bounds,
        used: &mut [bool],
        model: Option<(&[u8], usize)>,
        model_used: &mut bool,
        target: u64,
    ) -> Result<Planned> {
        let Content::Floats(dtype) = d.content else {
            unreachable!("only float datasets are planned")
        };
        let shape = d.shape.clone();
        let (chunk, axis) = chunk_shape(&shape, dtype.size() as u64, target);
        let table = shape.len() == 2;
        let columns = if table { shape[1] as usize } else { 1 };
        let names: Vec<String> = if table {
            baler::io::hdf5::column_names(ds)
                .map(|(_, n)| n)
                .filter(|n| n.len() == columns)
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        // The overrides that name a column of this table (all of them are for fields none).
        let mut mine = Bounds::new(bounds.default);
        if table {
            for (i, (r, spec)) in bounds.overrides.iter().enumerate() {
                let applies = match r {
                    ColumnRef::Index(j) => *j < columns,
                    ColumnRef::Name(n) => names.iter().any(|c| c == n),
                    ColumnRef::Pattern(_) => !names.is_empty(),
                };
                if applies {
                    used[i] = true;
                    mine.overrides.push((r.clone(), *spec));
                }
            }
        }
        let specs = mine.per_column(columns, &names, table)?;
        let stats = if specs.iter().any(|s| s.needs_range()) {
            Some(match dtype {
                DType::F32 => scan::<f32>(ds, &shape, &chunk, axis, columns)?,
                DType::F64 => scan::<f64>(ds, &shape, &chunk, axis, columns)?,
            })
        } else {
            None
        };
        let resolved: Vec<BoundSpec> = specs
            .iter()
            .enumerate()
            .map(|(j, &s)| match s {
                BoundSpec::Rel(_) => {
                    let st = stats.as_ref().map_or(ColumnStats::default(), |s| s[j]);
                    match s.resolve(&st) {
                        Bound::Abs(e) => BoundSpec::Abs(e),
                        _ => BoundSpec::Lossless,
                    }
                }
                other => other,
            })
            .collect();
        let default = resolved[0];
        let overrides: Vec<(usize, BoundSpec)> = resolved
            .iter()
            .enumerate()
            .filter(|&(_, s)| *s != default)
            .map(|(j, s)| (j, *s))
            .collect();
        let model_bytes = match model {
            Some((bytes, cols)) if table && cols == columns => {
                *model_used = true;
                Some(bytes)
            }
            _ => None,
        };
        let words = h5baler::params::user_words(default, &overrides, model_bytes);
        // The words must be what the filter accepts for this chunk shape (checked here, so a
        // mistake names the dataset before anything is written).
        let stored = h5baler::params::stored(&words, dtype.size(), &chunk)
            .map_err(|e| anyhow!("the filter's parameters: {e}"))?;
        let mut text = bounds.default.to_string();
        if specs.iter().any(|s| s.needs_range()) {
            text.push_str(if table {
                " (rel as abs on each column's range)"
            } else {
                " (rel as abs on the range)"
            });
        }
        for (j, s) in specs.iter().enumerate() {
            if *s != bounds.default {
                let n = names.get(j).cloned().unwrap_or_else(|| j.to_string());
                text.push_str(&format!(", {n}={s}"));
            }
        }
        if model_bytes.is_some() {
            text.push_str(", with the model");
        }
        Ok(Planned {
            path: d.path.clone(),
            dtype,
            shape,
            chunk,
            axis,
            words,
            stored,
            bounds: text,
        })
    }

    /// The blocks of whole chunks a dataset is read and written in: (start, count) pairs, each
    /// about [`BLOCK_BYTES`], covering the dataset once in C order.
    fn blocks(shape: &[u64], chunk: &[u64], axis: usize, elem: u64) -> Vec<(Vec<u64>, Vec<u64>)> {
        let chunk_bytes = chunk.iter().fold(elem, |a, &c| a.saturating_mul(c));
        let step = chunk[axis].saturating_mul((BLOCK_BYTES / chunk_bytes.max(1)).max(1));
        let outer: u64 = shape[..axis].iter().product();
        let mut out = Vec::new();
        for o in 0..outer {
            let mut idx = vec![0u64; axis];
            let mut rest = o;
            for ax in (0..axis).rev() {
                idx[ax] = rest % shape[ax];
                rest /= shape[ax];
            }
            let mut s = 0;
            while s < shape[axis] {
                let n = step.min(shape[axis] - s);
                let mut start = idx.clone();
                start.push(s);
                start.resize(shape.len(), 0);
                let mut count = vec![1u64; axis];
                count.push(n);
                count.extend_from_slice(&shape[axis + 1..]);
                out.push((start, count));
                s += n;
            }
        }
        out
    }

    /// Reads (`write` false) or writes `buf` as the block `start`/`count` of dataset `ds`.
    fn block_io<T: H5Type>(
        ds: hid_t,
        start: &[u64],
        count: &[u64],
        buf: *mut T,
        write: bool,
    ) -> Result<()> {
        let memtype = hdf5::Datatype::from_type::<T>().map_err(|e| anyhow!("{e}"))?;
        hdf5::sync::sync(|| {
            // SAFETY: `buf` holds the product of `count` values of `T` (the callers' vectors are
            // sized so), the memory space selects exactly that many, and every id is live
            // during the calls and closed after.
            unsafe {
                use hdf5_sys::{h5d, h5s};
                let file = Id::new(h5d::H5Dget_space(ds), h5s::H5Sclose)?;
                check(h5s::H5Sselect_hyperslab(
                    file.0,
                    h5s::H5S_seloper_t::H5S_SELECT_SET,
                    start.as_ptr() as *const hsize_t,
                    std::ptr::null(),
                    count.as_ptr() as *const hsize_t,
                    std::ptr::null(),
                ))?;
                let mem = Id::new(
                    h5s::H5Screate_simple(
                        count.len() as i32,
                        count.as_ptr() as *const hsize_t,
                        std::ptr::null(),
                    ),
                    h5s::H5Sclose,
                )?;
                let plist = hdf5_sys::h5p::H5P_DEFAULT;
                check(if write {
                    h5d::H5Dwrite(ds, memtype.id(), mem.0, file.0, plist, buf.cast())
                } else {
                    h5d::H5Dread(ds, memtype.id(), mem.0, file.0, plist, buf.cast())
                })
            }
        })
    }

    /// The value ranges of a dataset (per column of a table), read block by block.
    fn scan<T: H5Type + Element + Default + Copy>(
        ds: &Dataset,
        shape: &[u64],
        chunk: &[u64],
        axis: usize,
        columns: usize,
    ) -> Result<Vec<ColumnStats>> {
        let mut acc = StatsAccumulator::new(columns);
        let mut buf: Vec<T> = Vec::new();
        for (start, count) in blocks(shape, chunk, axis, T::BYTES as u64) {
            buf.resize(count.iter().product::<u64>() as usize, T::default());
            block_io(ds.id(), &start, &count, buf.as_mut_ptr(), false)
                .context("reading it for its value ranges")?;
            acc.add(&buf);
        }
        Ok(acc.finish())
    }

    /// Walks the input's groups, recreating them in the output.
    struct Walk<'a> {
        input: &'a str,
        plans: &'a [Planned],
        done: Vec<Option<(u64, u64)>>,
        /// Objects already copied (by hard link), and their path in the output.
        seen: Vec<(LocationToken, String)>,
        /// Objects copied as they are.
        copied: usize,
    }

    impl Walk<'_> {
        fn group(&mut self, src: &Group, dst: &Group, path: &str) -> Result<()> {
            let mut links: Vec<(String, LinkType)> = Vec::new();
            src.iter_visit_default(|name, info| {
                links.push((name.to_string(), info.link_type));
                Ok(())
            })
            .map_err(|e| {
                anyhow!(
                    "{}:{}: listing the group: {e}",
                    self.input,
                    path_or_root(path)
                )
            })?;
            for (name, link) in links {
                let child = format!("{path}/{name}");
                let at = format!("{}:{child}", self.input);
                match link {
                    LinkType::Soft | LinkType::External => {
                        copy_link(src, dst, &name, link).with_context(|| at.clone())?
                    }
                    LinkType::Hard => self.object(src, dst, &name, &child).with_context(|| at)?,
                }
            }
            Ok(())
        }

        fn object(&mut self, src: &Group, dst: &Group, name: &str, child: &str) -> Result<()> {
            let info = src
                .loc_info_by_name(name)
                .map_err(|e| anyhow!("cannot inspect it: {e}"))?;
            if let Some((_, first)) = self.seen.iter().find(|(t, _)| *t == info.token) {
                return dst
                    .link_hard(first, name)
                    .map_err(|e| anyhow!("linking it to {first}: {e}"));
            }
            self.seen.push((info.token, child.to_string()));
            match info.loc_type {
                LocationType::Group => {
                    let g = src.group(name).map_err(|e| anyhow!("opening it: {e}"))?;
                    let gcpl = g.create_plist().map_err(|e| anyhow!("{e}"))?;
                    let new = dst
                        .create_group_builder()
                        .set_gcpl(&gcpl)
                        .create(name)
                        .map_err(|e| anyhow!("creating the group: {e}"))?;
                    copy_attributes(&g, new.id()).context("copying its attributes")?;
                    self.group(&g, &new, child)
                }
                LocationType::Dataset => {
                    if let Some(i) = self.plans.iter().position(|p| p.path == child) {
                        let p = &self.plans[i];
                        let done = match p.dtype {
                            DType::F32 => convert::<f32>(src, dst, name, p)?,
                            DType::F64 => convert::<f64>(src, dst, name, p)?,
                        };
                        self.done[i] = Some((done.before, done.after));
                        Ok(())
                    } else {
                        let ds = src.dataset(name).map_err(|e| anyhow!("opening it: {e}"))?;
                        self.copied += 1;
                        ds.copy_to(dst, name)
                            .map_err(|e| anyhow!("copying it (H5Ocopy): {e}"))
                    }
                }
                LocationType::NamedDatatype => {
                    let t = src
                        .open_by_token(info.token)
                        .map_err(|e| anyhow!("opening it: {e}"))?;
                    self.copied += 1;
                    t.copy_to(dst, name)
                        .map_err(|e| anyhow!("copying it (H5Ocopy): {e}"))
                }
                #[allow(unreachable_patterns)]
                _ => bail!("an object of a kind h5repack does not copy"),
            }
        }
    }

    fn path_or_root(path: &str) -> &str {
        if path.is_empty() { "/" } else { path }
    }

    /// Recreates a soft or external link.
    fn copy_link(src: &Group, dst: &Group, name: &str, link: LinkType) -> Result<()> {
        let cname = cstr(name)?;
        let mut buf = vec![0u8; 1 << 16];
        hdf5::sync::sync(|| {
            // SAFETY: H5Lget_val writes at most `buf.len()` bytes into `buf`.
            check(unsafe {
                hdf5_sys::h5l::H5Lget_val(
                    src.id(),
                    cname.as_ptr(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    hdf5_sys::h5p::H5P_DEFAULT,
                )
            })
        })
        .context("reading the link")?;
        let text = |b: &[u8]| {
            let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
            String::from_utf8_lossy(&b[..end]).into_owned()
        };
        match link {
            LinkType::Soft => dst
                .link_soft(&text(&buf), name)
                .map_err(|e| anyhow!("recreating the soft link: {e}")),
            _ => {
                // An external link's value: a flags byte, the file name, the object path.
                let file = text(&buf[1..]);
                let obj = text(&buf[1 + file.len() + 1..]);
                dst.link_external(&file, &obj, name)
                    .map_err(|e| anyhow!("recreating the external link: {e}"))
            }
        }
    }

    /// Copies every attribute of `src` to the object `dst` (same name, file type, shape and
    /// values).
    fn copy_attributes(src: &hdf5::Location, dst: hid_t) -> Result<()> {
        let names = src
            .attr_names()
            .map_err(|e| anyhow!("listing its attributes: {e}"))?;
        for name in names {
            let cname = cstr(&name)?;
            hdf5::sync::sync(|| copy_attribute(src.id(), dst, &cname))
                .with_context(|| format!("copying the attribute '{name}'"))?;
        }
        Ok(())
    }

    /// Copies the attribute `name` of `src` to `dst`.
    fn copy_attribute(src: hid_t, dst: hid_t, name: &std::ffi::CStr) -> Result<()> {
        // SAFETY: plain HDF5 calls on live ids; the buffer is sized for the attribute's values
        // in their memory type; every id made here is closed by `Id`.
        unsafe {
            use hdf5_sys::{h5a, h5d, h5s, h5t};
            let attr = Id::new(
                h5a::H5Aopen(src, name.as_ptr(), hdf5_sys::h5p::H5P_DEFAULT),
                h5a::H5Aclose,
            )?;
            let ftype = Id::new(h5a::H5Aget_type(attr.0), h5t::H5Tclose)?;
            let space = Id::new(h5a::H5Aget_space(attr.0), h5s::H5Sclose)?;
            let mtype = Id::new(
                h5t::H5Tget_native_type(ftype.0, h5t::H5T_direction_t::H5T_DIR_ASCEND),
                h5t::H5Tclose,
            )?;
            let points = h5s::H5Sget_select_npoints(space.0).max(0) as usize;
            let mut buf = vec![0u8; points.max(1) * h5t::H5Tget_size(mtype.0).max(1)];
            check(h5a::H5Aread(attr.0, mtype.0, buf.as_mut_ptr().cast()))?;
            let written = Id::new(
                h5a::H5Acreate2(
                    dst,
                    name.as_ptr(),
                    ftype.0,
                    space.0,
                    hdf5_sys::h5p::H5P_DEFAULT,
                    hdf5_sys::h5p::H5P_DEFAULT,
                ),
                h5a::H5Aclose,
            )
            .and_then(|a| check(h5a::H5Awrite(a.0, mtype.0, buf.as_ptr().cast())));
            // Variable-length values (strings) were allocated by the library.
            #[allow(deprecated)]
            h5d::H5Dvlen_reclaim(
                mtype.0,
                space.0,
                hdf5_sys::h5p::H5P_DEFAULT,
                buf.as_mut_ptr().cast(),
            );
            written
        }
    }

    /// Writes one float dataset through the filter: created chunked with the planned
    /// parameters, its attributes copied, its values copied block by block.
    fn convert<T: H5Type + Element + Default + Copy>(
        src: &Group,
        dst: &Group,
        name: &str,
        p: &Planned,
    ) -> Result<Done> {
        let elem = T::BYTES as u64;
        let chunk_bytes = p.chunk.iter().fold(elem, |a, &c| a.saturating_mul(c));
        let cache = (BLOCK_BYTES + 2 * chunk_bytes).clamp(4 << 20, 256 << 20) as usize;
        let ds = open_cached(src, name, cache).context("opening it")?;
        let cname = cstr(name)?;
        let out = hdf5::sync::sync(|| {
            // SAFETY: plain HDF5 calls on live ids, with arrays of `rank` dimensions and
            // `words.len()` parameters; every id made here is closed by `Id` (the dataset's by
            // the crate's handle).
            unsafe {
                use hdf5_sys::{h5d, h5p, h5s};
                let rank = p.shape.len() as i32;
                let space = Id::new(
                    h5s::H5Screate_simple(
                        rank,
                        p.shape.as_ptr() as *const hsize_t,
                        std::ptr::null(),
                    ),
                    h5s::H5Sclose,
                )?;
                let dcpl = Id::new(
                    h5p::H5Pcreate(*hdf5::globals::H5P_DATASET_CREATE),
                    h5p::H5Pclose,
                )?;
                check(h5p::H5Pset_chunk(
                    dcpl.0,
                    rank,
                    p.chunk.as_ptr() as *const hsize_t,
                ))?;
                // Mandatory (flag 0), as `h5repack -f UD=47646,0,...` sets it: a chunk the
                // filter cannot compress is an error, never stored raw behind the user's back.
                check(h5p::H5Pset_filter(
                    dcpl.0,
                    FILTER,
                    0,
                    p.stored.len(),
                    p.stored.as_ptr(),
                ))?;
                let dapl = Id::new(
                    h5p::H5Pcreate(*hdf5::globals::H5P_DATASET_ACCESS),
                    h5p::H5Pclose,
                )?;
                check(h5p::H5Pset_chunk_cache(dapl.0, 12_421, cache, 1.0))?;
                let ftype = match p.dtype {
                    DType::F32 => *hdf5::globals::H5T_IEEE_F32LE,
                    DType::F64 => *hdf5::globals::H5T_IEEE_F64LE,
                };
                let id = h5d::H5Dcreate2(
                    dst.id(),
                    cname.as_ptr(),
                    ftype,
                    space.0,
                    h5p::H5P_DEFAULT,
                    dcpl.0,
                    dapl.0,
                );
                if id < 0 {
                    return Err(h5_error());
                }
                hdf5::from_id::<Dataset>(id).map_err(|e| anyhow!("{e}"))
            }
        })
        .context("creating it with the baler filter")?;
        copy_attributes(&ds, out.id()).context("copying its attributes")?;
        let mut buf: Vec<T> = Vec::new();
        for (start, count) in blocks(&p.shape, &p.chunk, p.axis, elem) {
            buf.resize(count.iter().product::<u64>() as usize, T::default());
            block_io(ds.id(), &start, &count, buf.as_mut_ptr(), false).context("reading it")?;
            block_io(out.id(), &start, &count, buf.as_mut_ptr(), true)
                .context("writing it through the baler filter")?;
        }
        // SAFETY: a live dataset id.
        let before = hdf5::sync::sync(|| unsafe { hdf5_sys::h5d::H5Dget_storage_size(ds.id()) });
        drop(out);
        let out = dst
            .dataset(name)
            .map_err(|e| anyhow!("reopening it: {e}"))?;
        // SAFETY: a live dataset id.
        let after = hdf5::sync::sync(|| unsafe { hdf5_sys::h5d::H5Dget_storage_size(out.id()) });
        Ok(Done { before, after })
    }

    /// The most filter values `h5repack -f UD=` takes (`CD_VALUES` in HDF5 1.10.8's
    /// `H5repack.h`; more are refused: "incorrect number of compression parameters").
    const TOOL_MAX_VALUES: usize = 20;

    /// What to know when a dataset's parameters are more than `h5repack` takes.
    fn tool_note(plans: &[Planned]) -> Option<String> {
        let long: Vec<String> = plans
            .iter()
            .filter(|p| p.words.len().min(p.stored.len()) > TOOL_MAX_VALUES)
            .map(|p| format!("{} ({})", p.path, p.words.len().min(p.stored.len())))
            .collect();
        (!long.is_empty()).then(|| {
            format!(
                "  note: HDF5's h5repack takes at most {TOOL_MAX_VALUES} filter values (1.10.8); \
                 {} need more (per-column bounds, `rel` resolved per column, a model): for \
                 those, `baler h5repack` is the way (or the filter's own `rel`, relative to each \
                 chunk's column ranges: UD=47646,0,3,2,1,3 for rel:1e-3)",
                long.join(", ")
            )
        })
    }

    /// A word for a shell: quoted when it holds anything but plain characters.
    fn shell(s: &str) -> String {
        if !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c))
        {
            s.to_string()
        } else {
            format!("'{}'", s.replace('\'', r"'\''"))
        }
    }

    /// The `h5repack` command that writes the same datasets (chunks and filter parameters;
    /// `rel` already resolved on this input's ranges).
    fn h5repack_command(plans: &[Planned], input: &str, output: &str) -> String {
        let mut cmd = String::from("h5repack");
        for p in plans {
            let chunk: Vec<String> = p.chunk.iter().map(|c| c.to_string()).collect();
            // The user's words where HDF5 hands them all to the filter, else the completed
            // form (for this chunk shape, which -l sets).
            let w = if p.words.len() <= h5baler::params::MAX_READ {
                &p.words
            } else {
                &p.stored
            };
            let words: Vec<String> = w.iter().map(|w| w.to_string()).collect();
            cmd.push_str(&format!(
                " -l {} -f {}",
                shell(&format!("{}:CHUNK={}", p.path, chunk.join("x"))),
                shell(&format!(
                    "{}:UD={FILTER},0,{},{}",
                    p.path,
                    words.len(),
                    words.join(",")
                ))
            ));
        }
        format!("{cmd} {} {}", shell(input), shell(output))
    }

    fn summary(
        plans: &[Planned],
        done: &[Option<(u64, u64)>],
        input: &str,
        output: &str,
        copied: usize,
        started: Instant,
        command: &str,
    ) {
        let pw = plans.iter().map(|p| p.path.len()).max().unwrap_or(0).max(5);
        eprintln!(
            "{input} -> {output}: {} through the baler filter (id {FILTER}), {copied} other \
             object{} copied, {:.2} s",
            match done.iter().flatten().count() {
                1 => "1 float dataset".to_string(),
                n => format!("{n} float datasets"),
            },
            if copied == 1 { "" } else { "s" },
            started.elapsed().as_secs_f64()
        );
        let (mut tb, mut ta, mut raw) = (0u64, 0u64, 0u64);
        for (p, d) in plans.iter().zip(done) {
            let Some((before, after)) = *d else { continue };
            let values = p.shape.iter().product::<u64>() * p.dtype.size() as u64;
            tb += before;
            ta += after;
            raw += values;
            eprintln!(
                "  {:<pw$}  {:<18} {:<7}  {:>10} -> {:>10}  {:>8.2}x  chunks {:<16} {}",
                p.path,
                baler::array::shape_string(&p.shape),
                match p.dtype {
                    DType::F32 => "float32",
                    DType::F64 => "float64",
                },
                size(before),
                size(after),
                before as f64 / after.max(1) as f64,
                baler::array::shape_string(&p.chunk),
                p.bounds
            );
        }
        let file_size = |f: &str| std::fs::metadata(f).map_or(0, |m| m.len());
        eprintln!(
            "  {:<pw$}  {:<18} {:<7}  {:>10} -> {:>10}  {:>8.2}x  ({} of values; files {} -> {})",
            "total",
            "",
            "",
            size(tb),
            size(ta),
            tb as f64 / ta.max(1) as f64,
            size(raw),
            size(file_size(input)),
            size(file_size(output))
        );
        eprintln!(
            "  the same with HDF5's tool (HDF5_PLUGIN_PATH naming libh5baler.so's folder):\n  \
             {command}"
        );
        if let Some(note) = tool_note(plans) {
            eprintln!("{note}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::chunk_shape;

    #[test]
    fn chunks_are_whole_rows_near_the_target_and_nearly_equal() {
        // Delphes: 77,394 rows of 64 bytes in 5 chunks, the last one row short.
        assert_eq!(chunk_shape(&[77394, 16], 4, 1 << 20), (vec![15479, 16], 0));
        // A small table: one chunk.
        assert_eq!(chunk_shape(&[1000, 4], 4, 1 << 20), (vec![1000, 4], 0));
        // A table wider than the target: one row per chunk, never split across columns.
        assert_eq!(
            chunk_shape(&[10, 1 << 19], 4, 1 << 20),
            (vec![1, 1 << 19], 0)
        );
        // ECHAM5: a slab of 1.25 MiB stays whole.
        assert_eq!(
            chunk_shape(&[3, 17, 96, 192], 4, 1 << 20),
            (vec![1, 17, 96, 192], 0)
        );
        // Small slabs: several per chunk.
        assert_eq!(
            chunk_shape(&[40, 64, 64], 8, 1 << 20),
            (vec![20, 64, 64], 0)
        );
        // A slab of 36 MB: split along the next axis.
        assert_eq!(
            chunk_shape(&[10, 3000, 3000], 4, 1 << 20),
            (vec![1, 86, 3000], 1)
        );
        // A series.
        assert_eq!(chunk_shape(&[1_000_000], 8, 1 << 20), (vec![125_000], 0));
        assert_eq!(chunk_shape(&[7], 4, 1 << 20), (vec![7], 0));
    }
}
