//! Writing result files atomically, and reading a typed file with its schema checked.

use std::io::Write;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

/// A file kind with a `schema` field naming its kind and version ("pollbench.load-gen.run/1").
pub trait Versioned {
    /// The schema string this code writes and reads.
    const SCHEMA: &'static str;
    /// The schema string of this value, as read.
    fn schema(&self) -> &str;
}

/// For `#[serde(deserialize_with = "crate::file::required")]` on an `Option` field that must be
/// present (as `null` or a value): serde takes a missing `Option` field as `None`; with this it is
/// a "missing field" error instead, like any other field.
pub fn required<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer)
}

/// Write `bytes` to `path` atomically: a temporary file beside it, synced, then renamed over, so a
/// reader never sees half a file and a failed write leaves no temporary behind.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("a result path needs a file name"))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Write `value` as pretty JSON (and a final newline) to `path` atomically.
pub fn write_json_atomically<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value)?;
    bytes.push(b'\n');
    write_atomically(path, &bytes)
}

/// Read a typed JSON file: the error names the file and, for a missing or mistyped field, the
/// field (serde's message) — never a silent default. The schema must be the one this code reads.
pub fn read_json<T: DeserializeOwned + Versioned>(path: &Path) -> Result<T, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    // serde_path_to_error names nested fields in full ("cells[3].label"), not only the last key.
    let value: T = serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(&text))
        .map_err(|e| format!("{}: {}: {}", path.display(), e.path(), e.inner()))?;
    if value.schema() != T::SCHEMA {
        return Err(format!(
            "{}: schema \"{}\", this program reads \"{}\"",
            path.display(),
            value.schema(),
            T::SCHEMA
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, Debug)]
    struct Doc {
        schema: String,
        count: u64,
    }
    impl Versioned for Doc {
        const SCHEMA: &'static str = "test.doc/1";
        fn schema(&self) -> &str {
            &self.schema
        }
    }

    #[test]
    fn typed_files_round_trip_and_refuse_other_schemas_and_missing_fields() {
        let dir = std::env::temp_dir().join(format!("schema-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("doc.json");
        let doc = Doc {
            schema: Doc::SCHEMA.into(),
            count: 7,
        };
        write_json_atomically(&path, &doc).unwrap();
        assert_eq!(read_json::<Doc>(&path).unwrap().count, 7);
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("doc.json")]);
        std::fs::write(&path, r#"{"schema": "test.doc/2", "count": 7}"#).unwrap();
        assert!(read_json::<Doc>(&path).unwrap_err().contains("test.doc/2"));
        std::fs::write(&path, r#"{"schema": "test.doc/1"}"#).unwrap();
        let err = read_json::<Doc>(&path).unwrap_err();
        assert!(
            err.contains("doc.json") && err.contains("missing field `count`"),
            "{err}"
        );
        std::fs::write(&path, r#"{"schema": "test.doc/1", "count": "seven"}"#).unwrap();
        assert!(read_json::<Doc>(&path)
            .unwrap_err()
            .contains("invalid type"));
        assert!(write_json_atomically(&dir.join("missing/out.json"), &1).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
