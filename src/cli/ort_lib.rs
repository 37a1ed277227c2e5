//! Where `tessera serve` finds ONNX Runtime when neither `--ort-lib` nor `ORT_DYLIB_PATH` says:
//! the `onnxruntime` package (or `onnxruntime-gpu`, same folder) of the active Python
//! environment, then of a Python on `PATH`, then `libonnxruntime.so` on the loader's path.

use std::path::{Path, PathBuf};

/// The library of the first environment that has one, in the order above; `None` leaves the
/// choice to the loader.
pub(crate) fn locate() -> Option<PathBuf> {
    let envs =
        ["VIRTUAL_ENV", "CONDA_PREFIX"].into_iter().filter_map(std::env::var_os).map(PathBuf::from);
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .filter(|d| d.join("python3").exists())
                .filter_map(|d| d.parent().map(Path::to_path_buf))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    envs.chain(on_path).find_map(|prefix| in_prefix(&prefix))
}

/// `PREFIX/lib/python3*/{site,dist}-packages/onnxruntime/capi/libonnxruntime.so*`, the highest
/// version when several are there.
pub(crate) fn in_prefix(prefix: &Path) -> Option<PathBuf> {
    let lib = prefix.join("lib");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&lib)
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .flat_map(|e| {
            ["site-packages", "dist-packages"].map(|p| e.path().join(p).join("onnxruntime/capi"))
        })
        .flat_map(|capi| std::fs::read_dir(capi).into_iter().flatten().flatten())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("libonnxruntime.so"))
        })
        .collect();
    found.sort();
    found.pop()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_library_of_a_venv_and_nothing_elsewhere() {
        let venv = tempfile::tempdir().unwrap();
        assert_eq!(in_prefix(venv.path()), None);
        let capi = venv.path().join("lib/python3.11/site-packages/onnxruntime/capi");
        std::fs::create_dir_all(&capi).unwrap();
        std::fs::write(capi.join("libonnxruntime_providers_shared.so"), b"").unwrap();
        assert_eq!(in_prefix(venv.path()), None);
        std::fs::write(capi.join("libonnxruntime.so.1.31.1"), b"").unwrap();
        assert_eq!(in_prefix(venv.path()), Some(capi.join("libonnxruntime.so.1.31.1")));
    }
}
