//! Links the command line with HDF5's static library where the installation has one.
//!
//! Debian's shared `libhdf5_serial` pulls in 37 shared libraries (curl, GnuTLS, Kerberos,
//! LDAP… for the read-only S3 driver baler never uses), and loading and relocating them took
//! about 5 ms of every command's start, 0.7 ms without them. The static archive's members are
//! taken only for the functions used, so the same HDF5 comes without them. Every public `H5…`
//! symbol linked in is exported, so HDF5 filter plugins that the library loads (baler's own
//! `libh5baler.so`, Blosc, LZ4…) find the functions they call in the program, as they do in a
//! program linked with the shared library.
//!
//! `BALER_HDF5_LINK=dynamic` links the shared library as before; so does an installation
//! without `libhdf5.a` and its `libhdf5.settings` beside the shared library (which names the
//! libraries the archive needs). `BALER_HDF5_LINKED` tells the tests which was chosen.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=BALER_HDF5_LINK");
    println!("cargo::rerun-if-env-changed=HDF5_DIR");
    if env::var_os("CARGO_FEATURE_HDF5").is_none() {
        return;
    }
    let linked = match env::var("BALER_HDF5_LINK").as_deref() {
        Ok("dynamic") => "dynamic",
        Ok("static") | Err(_) => link_static().unwrap_or("dynamic"),
        Ok(other) => panic!("BALER_HDF5_LINK is `static` or `dynamic`, not `{other}`"),
    };
    println!("cargo::rustc-env=BALER_HDF5_LINKED={linked}");
}

/// Links `lib<name>.a` of the HDF5 installation the `hdf5-sys` crate found, if it is there.
fn link_static() -> Option<&'static str> {
    // `hdf5-sys` (links = "hdf5") tells its dependents the library's name and headers.
    let name = env::var("DEP_HDF5_LIBRARY").unwrap_or_else(|_| "hdf5".into());
    let dir = library_dirs()
        .into_iter()
        .find(|d| d.join(format!("lib{name}.so")).exists())?;
    let archive = dir.join(format!("lib{name}.a"));
    let extra = extra_libraries(&dir.join(format!("lib{name}.settings")))?;
    if !archive.exists() {
        return None;
    }
    // The linker looks for `-l<name>` (which `hdf5-sys` asks for) in this folder first, where
    // the archive is alone: it takes the archive.
    let out = PathBuf::from(env::var_os("OUT_DIR")?).join("hdf5-static");
    std::fs::create_dir_all(&out).ok()?;
    let link = out.join(format!("lib{name}.a"));
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&archive, &link).ok()?;
    println!("cargo::rustc-link-search=native={}", out.display());
    // What the archive's members call, as shared libraries: the linker keeps only those a
    // member taken needs (`--as-needed`), so curl and OpenSSL are not loaded.
    for lib in extra {
        println!("cargo::rustc-link-lib=dylib={lib}");
    }
    println!("cargo::rustc-link-arg=-Wl,--export-dynamic-symbol=H5*");
    Some("static")
}

/// Where the shared library may be, in the order `hdf5-sys` looks on Linux: `HDF5_DIR`,
/// pkg-config, then its default folders (Debian's and Ubuntu's first).
fn library_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(root) = env::var_os("HDF5_DIR") {
        dirs.push(PathBuf::from(root).join("lib"));
    }
    for pc in ["hdf5", "hdf5-serial"] {
        let out = Command::new("pkg-config")
            .args(["--variable=libdir", pc])
            .output();
        if let Some(out) = out.ok().filter(|o| o.status.success()) {
            let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if !dir.is_empty() {
                dirs.push(dir.into());
            }
        }
    }
    for dir in [
        "/usr/lib/x86_64-linux-gnu/hdf5/serial",
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib64",
    ] {
        dirs.push(dir.into());
    }
    dirs
}

/// The libraries named on the `Extra libraries:` line of HDF5's build summary (e.g.
/// `-lcrypto -lcurl -lpthread -lsz -lz -ldl -lm`), without the `-l`; and its `HDF5 Version:`
/// (for `baler licenses`, as `BALER_HDF5_VERSION`).
fn extra_libraries(settings: &Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(settings).ok()?;
    let field = |name: &str| text.lines().find_map(|l| l.trim().strip_prefix(name));
    if let Some(version) = field("HDF5 Version:") {
        println!("cargo::rustc-env=BALER_HDF5_VERSION={}", version.trim());
    }
    field("Extra libraries:")?
        .split_whitespace()
        .map(|w| w.strip_prefix("-l").map(str::to_string))
        .collect()
}
