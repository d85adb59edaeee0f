//! A folder as a bucket. The root folder is the bucket; a key is a path below
//! it. Metadata lives in a JSON sidecar under `.reelay/meta/`, with the same
//! field names S3 uses for user metadata. Writes are atomic (temp + rename).

use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::time::UNIX_EPOCH;

use async_trait::async_trait;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

use crate::keys::{self, LOCAL_RESERVED};
use crate::policy;
use crate::ports::store::{
    Metadata, ObjectMeta, ObjectStore, PutCondition, PutOutcome, Skipped, StoreError, StoreResult,
};

/// The sidecar record; `size`, `mtime_ns` and `inode` tell whether it still describes
/// the file (a user may overwrite a file by hand).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Sidecar {
    etag: String,
    size: u64,
    mtime_ns: u128,
    /// Two files of one size written within one clock tick share an mtime;
    /// never their inode. Absent in sidecars written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    inode: Option<u64>,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    metadata: Metadata,
}

#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// Opens (and creates) the bucket folder. The root is canonicalised once so
    /// every later containment check compares real paths.
    pub fn open(root: impl AsRef<Path>) -> std::io::Result<Self> {
        std::fs::create_dir_all(root.as_ref())?;
        let root = std::fs::canonicalize(root.as_ref())?;
        // reelay's own folders must be real folders: a symlinked `.reelay/`,
        // `meta/` or `tmp/` would carry every record write out of the bucket.
        policy::fs::create_dirs(&root, &root.join(LOCAL_RESERVED).join("meta"))?;
        policy::fs::create_dirs(&root, &root.join(LOCAL_RESERVED).join("tmp"))?;
        Ok(LocalStore { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Maps a key to its file, refusing anything that could escape the root,
    /// including through a symlinked folder.
    pub fn path_for(&self, key: &str) -> StoreResult<PathBuf> {
        keys::validate(key).map_err(|e| StoreError::InvalidKey {
            key: e.key,
            reason: e.reason,
        })?;
        if key == LOCAL_RESERVED || key.starts_with(&format!("{LOCAL_RESERVED}/")) {
            return Err(StoreError::InvalidKey {
                key: key.to_string(),
                reason: format!("`{LOCAL_RESERVED}/` is reserved for reelay's own records"),
            });
        }
        let path = self.root.join(key);
        // Every existing ancestor must resolve inside the root.
        let mut probe = path.clone();
        loop {
            if let Ok(real) = std::fs::canonicalize(&probe) {
                if !real.starts_with(&self.root) {
                    return Err(StoreError::InvalidKey {
                        key: key.to_string(),
                        reason: "it resolves outside the bucket folder through a symlink".into(),
                    });
                }
                break;
            }
            if !probe.pop() {
                break;
            }
        }
        if path.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(StoreError::InvalidKey {
                key: key.into(),
                reason: "it contains `..`".into(),
            });
        }
        // Even a symlink that stays inside the bucket is refused: it would
        // let a write under one key land on another (an upload, a manifest).
        match policy::fs::first_symlink(&self.root, &path) {
            Ok(None) => {}
            Ok(Some(link)) => {
                let rel = link.strip_prefix(&self.root).unwrap_or(&link);
                return Err(StoreError::InvalidKey {
                    key: key.to_string(),
                    reason: format!(
                        "`{}` is a symlink; reelay reads and writes only real files and folders in the bucket, so replace it with the file or folder itself",
                        rel.display()
                    ),
                });
            }
            Err(e) => return Err(Self::io(key)(e)),
        }
        Ok(path)
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join(LOCAL_RESERVED).join("tmp")
    }

    /// The sidecar of `key`, named by a hash of the key: every key has one
    /// (a key's last segment may be too long for a file name once `.json` is
    /// added), and no two collide (`a.json`'s sidecar vs `a.json.json/x`'s).
    fn sidecar_path(&self, key: &str) -> PathBuf {
        use sha2::{Digest, Sha256};
        let hash = hex::encode(Sha256::digest(key.as_bytes()));
        self.root
            .join(LOCAL_RESERVED)
            .join("meta")
            .join("v2")
            .join(&hash[..2])
            .join(format!("{hash}.json"))
    }

    /// Where sidecars were kept before they were named by hash; read only.
    fn legacy_sidecar_path(&self, key: &str) -> PathBuf {
        self.root
            .join(LOCAL_RESERVED)
            .join("meta")
            .join(format!("{key}.json"))
    }

    /// A sidecar's bytes, never read through a symlink.
    fn read_sidecar(&self, path: &Path) -> Option<Sidecar> {
        if !matches!(policy::fs::first_symlink(&self.root, path), Ok(None)) {
            return None;
        }
        let bytes = std::fs::read(path).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn io(key: &str) -> impl Fn(std::io::Error) -> StoreError + '_ {
        move |source| StoreError::Io {
            key: key.to_string(),
            source,
        }
    }

    fn head_sync(&self, key: &str) -> StoreResult<Option<ObjectMeta>> {
        Ok(self.open_sync(key)?.map(|(_, meta)| meta))
    }

    /// Opens `key` and describes the file it opened. What is then read
    /// from the handle is that version even when a put or a delete lands
    /// meanwhile, as with an S3 GET: a claim released or an output replaced
    /// between a head and a read is never an I/O error, and the etag always
    /// belongs to the bytes.
    fn open_sync(&self, key: &str) -> StoreResult<Option<(std::fs::File, ObjectMeta)>> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.path_for(key)?;
        let mut file = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Self::io(key)(e)),
        };
        let stat = file.metadata().map_err(Self::io(key))?;
        if !stat.is_file() {
            return Ok(None);
        }
        let mtime = stat.modified().map_err(Self::io(key))?;
        let mtime_ns = mtime
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let sidecar_path = self.sidecar_path(key);
        let cached = self
            .read_sidecar(&sidecar_path)
            .or_else(|| self.read_sidecar(&self.legacy_sidecar_path(key)))
            .filter(|s| {
                s.size == stat.len()
                    && s.mtime_ns == mtime_ns
                    && s.inode.is_none_or(|inode| inode == stat.ino())
            });
        let sidecar = match cached {
            Some(s) => s,
            None => {
                // A file dropped by hand (or changed by hand): its etag is its MD5,
                // as S3 gives for a single-part upload; its old metadata is void.
                let etag = md5_of(&mut file).map_err(Self::io(key))?;
                file.seek(SeekFrom::Start(0)).map_err(Self::io(key))?;
                let sidecar = Sidecar {
                    etag,
                    size: stat.len(),
                    mtime_ns,
                    inode: Some(stat.ino()),
                    content_type: None,
                    metadata: Metadata::new(),
                };
                // A cache only: when it cannot be written (a symlinked
                // meta folder is refused) the object is still readable.
                if let Err(e) = policy::fs::write_atomic(
                    &self.root,
                    &self.tmp_dir(),
                    &sidecar_path,
                    &serde_json::to_vec(&sidecar).unwrap(),
                ) {
                    tracing::warn!(key = %policy::text::for_terminal(key), error = %e, "could not cache an object's etag");
                }
                sidecar
            }
        };
        let meta = ObjectMeta {
            key: key.to_string(),
            size: sidecar.size,
            etag: sidecar.etag,
            last_modified: (mtime_ns / 1_000_000_000) as i64,
            content_type: sidecar.content_type,
            metadata: sidecar.metadata,
        };
        Ok(Some((file, meta)))
    }

    /// The opened version of `key`, or [`StoreError::NotFound`].
    fn open_existing(&self, key: &str) -> StoreResult<(std::fs::File, ObjectMeta)> {
        self.open_sync(key)?
            .ok_or_else(|| StoreError::NotFound { key: key.into() })
    }

    fn put_sync(
        &self,
        key: &str,
        src: Source<'_>,
        content_type: &str,
        metadata: &Metadata,
        condition: PutCondition,
    ) -> StoreResult<PutOutcome> {
        validate_metadata(key, metadata)?;
        let path = self.path_for(key)?;
        if let Some(parent) = path.parent() {
            policy::fs::create_dirs(&self.root, parent).map_err(Self::io(key))?;
            // Re-check: the folder we just created must not sit behind a symlink.
            self.path_for(key)?;
        }
        let tmp = policy::fs::new_temp(&self.root, &self.tmp_dir()).map_err(Self::io(key))?;
        let mut hasher = Md5::new();
        let mut size = 0u64;
        {
            let mut out = std::io::BufWriter::new(tmp.as_file());
            let mut feed = |chunk: &[u8]| -> std::io::Result<()> {
                hasher.update(chunk);
                size += chunk.len() as u64;
                out.write_all(chunk)
            };
            match src {
                Source::Bytes(b) => feed(b).map_err(Self::io(key))?,
                Source::File(p) => {
                    let mut f = std::fs::File::open(p).map_err(Self::io(key))?;
                    let mut buf = vec![0u8; 1 << 20];
                    loop {
                        let n = f.read(&mut buf).map_err(Self::io(key))?;
                        if n == 0 {
                            break;
                        }
                        feed(&buf[..n]).map_err(Self::io(key))?;
                    }
                }
            }
            out.flush().map_err(Self::io(key))?;
        }
        tmp.as_file().sync_all().map_err(Self::io(key))?;
        let etag = hex::encode(hasher.finalize());
        // The sidecar names the file by size, mtime and inode, which a
        // rename or a link keeps: it is known before the file is published.
        let stat = tmp.as_file().metadata().map_err(Self::io(key))?;
        let mtime_ns = stat
            .modified()
            .map_err(Self::io(key))?
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let sidecar = Sidecar {
            etag: etag.clone(),
            size,
            mtime_ns,
            inode: Some(stat.ino()),
            content_type: Some(content_type.to_string()),
            metadata: metadata.clone(),
        };
        let write_sidecar = || {
            policy::fs::write_atomic(
                &self.root,
                &self.tmp_dir(),
                &self.sidecar_path(key),
                &serde_json::to_vec(&sidecar).unwrap(),
            )
            .map_err(Self::io(key))
        };
        // Publish: rename is atomic; for IfAbsent, a hard link fails if the key exists.
        match condition {
            PutCondition::Overwrite => {
                // Sidecar first: a head between the two steps (or a crash)
                // must never see the new file without its metadata, or it
                // takes it for a hand-dropped file and erases the metadata.
                write_sidecar()?;
                tmp.persist(&path).map_err(|e| Self::io(key)(e.error))?;
            }
            PutCondition::IfAbsent => {
                match std::fs::hard_link(tmp.path(), &path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                        return Ok(PutOutcome::AlreadyExists);
                    }
                    Err(e) => return Err(Self::io(key)(e)),
                }
                // After the link: a losing put must not touch the winner's
                // sidecar. (Only claims are put this way; they carry no metadata.)
                write_sidecar()?;
            }
        }
        Ok(PutOutcome::Written(ObjectMeta {
            key: key.to_string(),
            size,
            etag,
            last_modified: (mtime_ns / 1_000_000_000) as i64,
            content_type: Some(content_type.to_string()),
            metadata: metadata.clone(),
        }))
    }

    /// Lists `prefix`. One entry that cannot be read (a folder without
    /// permission, a name the store cannot hold) is skipped and logged, never
    /// the whole listing: one bad upload must not stop every other job.
    fn list_sync(&self, prefix: &str) -> StoreResult<(Vec<ObjectMeta>, Vec<Skipped>)> {
        let mut keys = Vec::new();
        let mut skipped = Vec::new();
        walk(&self.root, &self.root, &mut keys, &mut skipped).map_err(Self::io(prefix))?;
        keys.retain(|k| k.starts_with(prefix));
        skipped.retain(|s| s.name.starts_with(prefix));
        keys.sort();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            match self.head_sync(&key) {
                Ok(Some(meta)) => out.push(meta),
                Ok(None) => {}
                Err(e) => skipped.push(Skipped {
                    name: policy::text::for_terminal(&key),
                    reason: format!(
                        "it cannot be read ({e}); make it a readable file, or remove it"
                    ),
                }),
            }
        }
        for s in &skipped {
            tracing::warn!(entry = %s.name, reason = %s.reason, "skipping an entry that cannot be an object");
        }
        Ok((out, skipped))
    }
}

enum Source<'a> {
    Bytes(&'a [u8]),
    File(&'a Path),
}

/// S3 keeps user metadata US-ASCII and within 2 KB; the local store enforces
/// the same so that what works locally works on S3.
pub fn validate_metadata(key: &str, metadata: &Metadata) -> StoreResult<()> {
    let mut total = 0;
    for (name, value) in metadata {
        if !name.is_ascii() || !value.is_ascii() || name.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(StoreError::InvalidMetadata {
                key: key.into(),
                reason: format!("`{name}` must be lower-case US-ASCII with a US-ASCII value"),
            });
        }
        total += name.len() + value.len();
    }
    if total > 2048 {
        return Err(StoreError::InvalidMetadata {
            key: key.into(),
            reason: format!("{total} bytes is over S3's 2 KB limit on user metadata"),
        });
    }
    Ok(())
}

/// Collects every file's key under `dir`; an entry that cannot be an
/// object goes to `skipped` instead of failing the listing.
fn walk(
    root: &Path,
    dir: &Path,
    out: &mut Vec<String>,
    skipped: &mut Vec<Skipped>,
) -> std::io::Result<()> {
    let shown = |path: &Path| {
        let rel = path.strip_prefix(root).unwrap_or(path);
        policy::text::for_terminal(&rel.to_string_lossy())
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) if dir == root => return Err(e),
        Err(e) => {
            // One unreadable folder is skipped, not the whole listing.
            skipped.push(Skipped {
                name: format!("{}/", shown(dir)),
                reason: format!("the folder cannot be read ({e}); make it readable, or remove it"),
            });
            return Ok(());
        }
    };
    for entry in entries {
        let Ok(entry) = entry else { continue };
        let path = entry.path();
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        let rel = path.strip_prefix(root).expect("walk stays under root");
        if rel == Path::new(LOCAL_RESERVED) {
            continue;
        }
        // Symlinks are never followed: they could lead out of the bucket.
        if file_type.is_dir() {
            walk(root, &path, out, skipped)?;
        } else if file_type.is_file() {
            match rel.to_str().map(|key| (key, keys::validate(key))) {
                Some((key, Ok(()))) => out.push(key.to_string()),
                Some((_, Err(e))) => skipped.push(Skipped {
                    name: shown(&path),
                    reason: format!("its name is not a key: {}", e.reason),
                }),
                None => skipped.push(Skipped {
                    name: shown(&path),
                    reason: "its name is not UTF-8, so it has no key; rename it".into(),
                }),
            }
        }
    }
    Ok(())
}

fn md5_of(f: &mut std::fs::File) -> std::io::Result<String> {
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[async_trait]
impl ObjectStore for LocalStore {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    async fn head(&self, key: &str) -> StoreResult<Option<ObjectMeta>> {
        let this = self.clone();
        let key = key.to_string();
        blocking(move || this.head_sync(&key)).await
    }

    async fn get_to_file(&self, key: &str, dest: &Path) -> StoreResult<ObjectMeta> {
        let this = self.clone();
        let (key, dest) = (key.to_string(), dest.to_path_buf());
        blocking(move || {
            let (mut file, meta) = this.open_existing(&key)?;
            let mut out = std::fs::File::create(&dest).map_err(Self::io(&key))?;
            std::io::copy(&mut file, &mut out).map_err(Self::io(&key))?;
            Ok(meta)
        })
        .await
    }

    /// The open handle keeps the version a put renames over; the second
    /// head catches a file rewritten in place (a copy made by hand), whose
    /// bytes may have changed under the copy.
    async fn get_version_to_file(
        &self,
        key: &str,
        etag: &str,
        dest: &Path,
    ) -> StoreResult<ObjectMeta> {
        let meta = self.get_to_file(key, dest).await?;
        let after = self.head(key).await?;
        if meta.etag == etag && after.is_some_and(|a| a.etag == etag) {
            return Ok(meta);
        }
        let _ = tokio::fs::remove_file(dest).await;
        Err(StoreError::Changed {
            key: key.to_string(),
            expected: etag.to_string(),
        })
    }

    async fn get_bytes(&self, key: &str) -> StoreResult<(Vec<u8>, ObjectMeta)> {
        let this = self.clone();
        let key = key.to_string();
        blocking(move || {
            let (mut file, meta) = this.open_existing(&key)?;
            let mut bytes = Vec::with_capacity(meta.size as usize);
            file.read_to_end(&mut bytes).map_err(Self::io(&key))?;
            Ok((bytes, meta))
        })
        .await
    }

    fn local_path(&self, key: &str) -> Option<PathBuf> {
        self.path_for(key).ok()
    }

    fn check_writable(&self, key: &str) -> StoreResult<()> {
        self.path_for(key).map(|_| ())
    }

    async fn put_file(
        &self,
        key: &str,
        src: &Path,
        content_type: &str,
        metadata: &Metadata,
    ) -> StoreResult<ObjectMeta> {
        let this = self.clone();
        let (key, src, ct, md) = (
            key.to_string(),
            src.to_path_buf(),
            content_type.to_string(),
            metadata.clone(),
        );
        let outcome = blocking(move || {
            this.put_sync(&key, Source::File(&src), &ct, &md, PutCondition::Overwrite)
        })
        .await?;
        match outcome {
            PutOutcome::Written(meta) => Ok(meta),
            PutOutcome::AlreadyExists => unreachable!("overwrite never conflicts"),
        }
    }

    async fn put_bytes(
        &self,
        key: &str,
        bytes: &[u8],
        content_type: &str,
        metadata: &Metadata,
        condition: PutCondition,
    ) -> StoreResult<PutOutcome> {
        let this = self.clone();
        let (key, bytes, ct, md) = (
            key.to_string(),
            bytes.to_vec(),
            content_type.to_string(),
            metadata.clone(),
        );
        blocking(move || this.put_sync(&key, Source::Bytes(&bytes), &ct, &md, condition)).await
    }

    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        Ok(self.list_checked(prefix).await?.0)
    }

    async fn list_checked(&self, prefix: &str) -> StoreResult<(Vec<ObjectMeta>, Vec<Skipped>)> {
        let this = self.clone();
        let prefix = prefix.to_string();
        blocking(move || this.list_sync(&prefix)).await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        let path = self.path_for(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(Self::io(key)(e)),
        }
        let _ = tokio::fs::remove_file(self.sidecar_path(key)).await;
        if matches!(
            policy::fs::first_symlink(&self.root, &self.legacy_sidecar_path(key)),
            Ok(None)
        ) {
            let _ = tokio::fs::remove_file(self.legacy_sidecar_path(key)).await;
        }
        Ok(())
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> StoreResult<T> + Send + 'static,
) -> StoreResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Backend {
            key: String::new(),
            message: format!("storage thread failed: {e}"),
        })?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, &str)]) -> Metadata {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[tokio::test]
    async fn put_head_get_round_trip_with_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let md = meta(&[("reelay-task", "abc")]);
        let out = store
            .put_bytes(
                "work/j/a b.txt",
                b"hello",
                "text/plain",
                &md,
                PutCondition::Overwrite,
            )
            .await
            .unwrap();
        let PutOutcome::Written(written) = out else {
            panic!()
        };
        assert_eq!(written.etag, "5d41402abc4b2a76b9719d911017c592");
        let head = store.head("work/j/a b.txt").await.unwrap().unwrap();
        assert_eq!(head.metadata, md);
        assert_eq!(head.size, 5);
        let (bytes, _) = store.get_bytes("work/j/a b.txt").await.unwrap();
        assert_eq!(bytes, b"hello");
        assert!(store.head("missing").await.unwrap().is_none());
    }

    /// A download asks for the version a task names; a replaced upload is
    /// `Changed`, and nothing of it is left at the destination.
    #[tokio::test]
    async fn a_download_gets_the_named_version_or_says_it_changed() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let put = |body: &'static [u8]| {
            let store = store.clone();
            async move {
                match store
                    .put_bytes(
                        "sources/a.mp4",
                        body,
                        "video/mp4",
                        &Metadata::new(),
                        PutCondition::Overwrite,
                    )
                    .await
                    .unwrap()
                {
                    PutOutcome::Written(m) => m,
                    other => panic!("{other:?}"),
                }
            }
        };
        let old = put(b"first upload").await;
        let dest = dir.path().join("copy.mp4");
        let got = store
            .get_version_to_file("sources/a.mp4", &old.etag, &dest)
            .await
            .unwrap();
        assert_eq!(got.etag, old.etag);
        assert_eq!(std::fs::read(&dest).unwrap(), b"first upload");
        std::fs::remove_file(&dest).unwrap();
        let new = put(b"second upload, replacing it").await;
        assert_ne!(new.etag, old.etag);
        let err = store
            .get_version_to_file("sources/a.mp4", &old.etag, &dest)
            .await
            .unwrap_err();
        assert!(err.is_changed(), "{err}");
        assert!(err.to_string().contains("sources/a.mp4"), "{err}");
        assert!(
            !dest.exists(),
            "the other version was left at the destination"
        );
        store
            .get_version_to_file("sources/a.mp4", &new.etag, &dest)
            .await
            .unwrap();
        assert_eq!(
            std::fs::read(&dest).unwrap(),
            b"second upload, replacing it"
        );
    }

    #[tokio::test]
    async fn conditional_put_first_writer_wins() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let md = Metadata::new();
        assert!(matches!(
            store
                .put_bytes("k", b"1", "x", &md, PutCondition::IfAbsent)
                .await
                .unwrap(),
            PutOutcome::Written(_)
        ));
        assert_eq!(
            store
                .put_bytes("k", b"2", "x", &md, PutCondition::IfAbsent)
                .await
                .unwrap(),
            PutOutcome::AlreadyExists
        );
        assert_eq!(store.get_bytes("k").await.unwrap().0, b"1");
    }

    /// A head that lands between a put's publish and its sidecar must not
    /// take the new object for a hand-dropped file and strip its metadata:
    /// the planner would then see the step as not done and run it again.
    #[test]
    fn a_head_racing_a_put_never_strips_its_metadata() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let md = meta(&[("reelay-task", "t1")]);
        let mut stripped = 0;
        for i in 0..150 {
            let key = format!("work/o{i}.bin");
            let stop = Arc::new(AtomicBool::new(false));
            let reader = {
                let (store, key, stop) = (store.clone(), key.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        let _ = store.head_sync(&key);
                    }
                })
            };
            store
                .put_sync(
                    &key,
                    Source::Bytes(b"output"),
                    "x",
                    &md,
                    PutCondition::Overwrite,
                )
                .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(2));
            stop.store(true, Ordering::SeqCst);
            reader.join().unwrap();
            let head = store.head_sync(&key).unwrap().unwrap();
            if head.metadata.get("reelay-task").map(String::as_str) != Some("t1") {
                stripped += 1;
            }
        }
        assert_eq!(stripped, 0, "puts whose metadata a concurrent head erased");
    }

    /// A claim released, or an object replaced, while it is read is either
    /// read whole with its own etag or not found; never an I/O error, which
    /// would fail the task that read it (a duplicate finding a claim gone).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_racing_a_put_or_a_delete_is_whole_or_not_found() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let key = "_reelay/claims/t.json";
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (store, stop) = (store.clone(), stop.clone());
            let runtime = tokio::runtime::Handle::current();
            std::thread::spawn(move || {
                let mut i = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    let body = "x".repeat(1 + i % 64);
                    let condition = if i.is_multiple_of(2) {
                        PutCondition::IfAbsent
                    } else {
                        PutCondition::Overwrite
                    };
                    store
                        .put_sync(
                            key,
                            Source::Bytes(body.as_bytes()),
                            "x",
                            &meta(&[]),
                            condition,
                        )
                        .unwrap();
                    if i.is_multiple_of(3) {
                        runtime.block_on(store.delete(key)).unwrap();
                    }
                    i += 1;
                }
            })
        };
        let (mut read, mut missing) = (0, 0);
        let scratch = tempfile::tempdir().unwrap();
        let dest = scratch.path().join("copy");
        for round in 0..3000u32 {
            let got = if round.is_multiple_of(2) {
                store.get_bytes(key).await
            } else {
                store
                    .get_to_file(key, &dest)
                    .await
                    .map(|m| (std::fs::read(&dest).unwrap(), m))
            };
            match got {
                Ok((bytes, m)) => {
                    assert_eq!(
                        hex::encode(Md5::digest(&bytes)),
                        m.etag,
                        "etag of other bytes"
                    );
                    assert_eq!(bytes.len() as u64, m.size);
                    read += 1;
                }
                Err(e) => {
                    assert!(e.is_not_found(), "round {round}: {e}");
                    missing += 1;
                }
            }
        }
        stop.store(true, Ordering::SeqCst);
        writer.join().unwrap();
        assert!(
            read > 0 && missing > 0,
            "read {read}, missing {missing}: no race was run"
        );
    }

    /// A file put by hand over an object, with the same size and within the
    /// same clock tick, is another file: it gets its own etag, not the
    /// replaced object's etag and metadata.
    #[tokio::test]
    async fn a_same_size_file_with_the_same_mtime_is_not_taken_for_the_object() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let put = store
            .put_bytes(
                "work/o.bin",
                b"first",
                "x",
                &meta(&[("reelay-task", "t1")]),
                PutCondition::Overwrite,
            )
            .await
            .unwrap();
        let PutOutcome::Written(put) = put else {
            panic!("written")
        };
        let path = dir.path().join("work/o.bin");
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        let other = dir.path().join("other.bin");
        std::fs::write(&other, b"other").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&other)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        std::fs::rename(&other, &path).unwrap();
        let head = store.head("work/o.bin").await.unwrap().unwrap();
        assert_eq!(head.etag, hex::encode(Md5::digest(b"other")));
        assert_ne!(head.etag, put.etag);
        assert!(head.metadata.is_empty(), "{:?}", head.metadata);
    }

    #[tokio::test]
    async fn hand_dropped_file_gets_md5_etag_and_changes_with_content() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        std::fs::create_dir_all(dir.path().join("sources")).unwrap();
        std::fs::write(dir.path().join("sources/a.mp4"), b"hello").unwrap();
        let first = store.head("sources/a.mp4").await.unwrap().unwrap();
        assert_eq!(first.etag, "5d41402abc4b2a76b9719d911017c592");
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(dir.path().join("sources/a.mp4"), b"hello!").unwrap();
        let second = store.head("sources/a.mp4").await.unwrap().unwrap();
        assert_ne!(first.etag, second.etag);
    }

    #[tokio::test]
    async fn keys_never_leave_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
        let md = Metadata::new();
        for key in ["../escape", "/abs", "link/x", ".reelay/meta/x", "a/../../b"] {
            assert!(
                store
                    .put_bytes(key, b"x", "x", &md, PutCondition::Overwrite)
                    .await
                    .is_err(),
                "{key}"
            );
        }
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        // Listing does not follow the symlink either.
        std::fs::write(outside.path().join("secret"), b"s").unwrap();
        assert!(
            store
                .list("")
                .await
                .unwrap()
                .iter()
                .all(|m| !m.key.starts_with("link"))
        );
    }

    /// The adversarial cases: symlinks under `.reelay/` carried sidecar
    /// writes out of the bucket (an upload was enough, no job needed).
    #[tokio::test]
    async fn reelay_folders_are_never_written_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let meta = dir.path().join(".reelay/meta");
        std::fs::create_dir_all(meta.join("v2")).unwrap();
        std::fs::remove_dir(meta.join("v2")).unwrap();
        std::os::unix::fs::symlink(outside.path(), meta.join("v2")).unwrap();
        std::os::unix::fs::symlink(outside.path(), meta.join("sources")).unwrap();
        std::fs::create_dir_all(dir.path().join("sources")).unwrap();
        std::fs::write(dir.path().join("sources/a.mp4"), b"hello").unwrap();
        // The upload is still read; its etag is not cached outside.
        let head = store.head("sources/a.mp4").await.unwrap().unwrap();
        assert_eq!(head.etag, "5d41402abc4b2a76b9719d911017c592");
        let e = store
            .put_bytes(
                "exports/x",
                b"x",
                "x",
                &Metadata::new(),
                PutCondition::Overwrite,
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);

        // A symlinked temp folder: the store refuses to open.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".reelay")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join(".reelay/tmp")).unwrap();
        let e = LocalStore::open(dir.path()).unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    /// A symlink inside the bucket is refused too, for reads and writes: it
    /// would let one key's write land on another key (an upload).
    #[tokio::test]
    async fn a_symlinked_source_or_output_folder_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        std::fs::create_dir_all(dir.path().join("sources")).unwrap();
        std::fs::write(dir.path().join("sources/real.mp4"), b"video").unwrap();
        std::os::unix::fs::symlink(
            dir.path().join("sources/real.mp4"),
            dir.path().join("sources/link.mp4"),
        )
        .unwrap();
        std::os::unix::fs::symlink(dir.path().join("sources"), dir.path().join("exports")).unwrap();
        let e = store.head("sources/link.mp4").await.unwrap_err();
        assert!(
            e.to_string().contains("`sources/link.mp4` is a symlink"),
            "{e}"
        );
        assert!(e.to_string().contains("replace it"), "{e}");
        let e = store
            .put_bytes(
                "exports/real.mp4",
                b"x",
                "x",
                &Metadata::new(),
                PutCondition::Overwrite,
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("`exports` is a symlink"), "{e}");
        assert_eq!(
            std::fs::read(dir.path().join("sources/real.mp4")).unwrap(),
            b"video"
        );
    }

    /// One awkward name must not fail the listing of its whole prefix: a
    /// name too long for `NAME.json`, and a file whose sidecar name is a
    /// folder another key needs (`a.json` vs `a.json.json/x`).
    #[tokio::test]
    async fn awkward_names_neither_collide_nor_fail_the_listing() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let long = format!("jobs/{}.json", "n".repeat(250));
        for key in [
            "jobs/a.json",
            "jobs/a.json.json/x.json",
            long.as_str(),
            "jobs/z.json",
        ] {
            let path = dir.path().join(key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, key.as_bytes()).unwrap();
        }
        let keys: Vec<_> = store
            .list("jobs/")
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.key)
            .collect();
        assert_eq!(keys.len(), 4, "{keys:?}");
        assert!(keys.contains(&"jobs/z.json".to_string()));
        // And both sidecars hold: the metadata of each survives.
        let md: Metadata = [("reelay-task".to_string(), "t".to_string())].into();
        for key in ["jobs/a.json", "jobs/a.json.json/x.json", long.as_str()] {
            store
                .put_bytes(key, b"{}", "x", &md, PutCondition::Overwrite)
                .await
                .unwrap();
        }
        for key in ["jobs/a.json", "jobs/a.json.json/x.json", long.as_str()] {
            assert_eq!(
                store.head(key).await.unwrap().unwrap().metadata,
                md,
                "{key}"
            );
        }
    }

    #[tokio::test]
    async fn list_is_sorted_and_prefix_filtered() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let md = Metadata::new();
        for key in ["jobs/b.json", "jobs/a.json", "sources/x.mp4"] {
            store
                .put_bytes(key, b"{}", "x", &md, PutCondition::Overwrite)
                .await
                .unwrap();
        }
        let keys: Vec<_> = store
            .list("jobs/")
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.key)
            .collect();
        assert_eq!(keys, ["jobs/a.json", "jobs/b.json"]);
    }

    #[test]
    fn metadata_limits_match_s3() {
        assert!(validate_metadata("k", &meta(&[("reelay-x", "é")])).is_err());
        assert!(validate_metadata("k", &meta(&[("Upper", "x")])).is_err());
        let big = "x".repeat(2100);
        assert!(validate_metadata("k", &meta(&[("a", big.as_str())])).is_err());
    }
}
