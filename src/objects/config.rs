//! `[storage]`: where a call's objects go.
//!
//! ```toml
//! [storage]
//! url = "s3://voxpipe-calls/prod"     # or "file:///srv/voxpipe/objects", or a relative folder
//! region = "us-east-1"
//! endpoint = "http://127.0.0.1:9000"  # MinIO, R2, Spaces...; omit for AWS
//! path_style = true                   # false: virtual-hosted-style requests, always to {bucket}.{endpoint host}
//! access_key_id_env = "AWS_ACCESS_KEY_ID"
//! secret_access_key_env = "AWS_SECRET_ACCESS_KEY"
//! session_token_env = "AWS_SESSION_TOKEN"   # optional
//! scan_secs = 10                      # how often the recording spool is scanned
//! ```
//!
//! Every key is optional: `[storage]` alone keeps the objects in the local
//! folder `voxpipe-data/objects`. The URL is checked as the file is read,
//! so a bad one is reported with its file, line and key.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use crate::config::Seconds;

/// The folder `[storage]` uses when it names none.
pub const DEFAULT_FOLDER: &str = "voxpipe-data/objects";

/// `[storage]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// A local folder or an S3-compatible bucket (and prefix).
    #[serde(default)]
    pub url: StorageUrl,
    /// The bucket's region (S3 only).
    #[serde(default = "default_region")]
    pub region: String,
    /// The server to talk to instead of AWS (S3 only), e.g.
    /// `http://127.0.0.1:9000`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`), what most
    /// S3-compatible servers expect; false for virtual-hosted style.
    #[serde(default = "default_true")]
    pub path_style: bool,
    /// The variable holding the access key id.
    #[serde(default = "default_access_key_env")]
    pub access_key_id_env: String,
    /// The variable holding the secret access key.
    #[serde(default = "default_secret_key_env")]
    pub secret_access_key_env: String,
    /// The variable holding a session token, if the credentials are
    /// temporary.
    #[serde(default)]
    pub session_token_env: Option<String>,
    /// How often the recording uploader looks at its spool, besides when
    /// told a recording is finished.
    #[serde(default = "default_scan")]
    pub scan_secs: Seconds<1000>,
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            url: StorageUrl::default(),
            region: default_region(),
            endpoint: None,
            path_style: true,
            access_key_id_env: default_access_key_env(),
            secret_access_key_env: default_secret_key_env(),
            session_token_env: None,
            scan_secs: default_scan(),
        }
    }
}

fn default_region() -> String {
    "us-east-1".into()
}
fn default_true() -> bool {
    true
}
fn default_access_key_env() -> String {
    "AWS_ACCESS_KEY_ID".into()
}
fn default_secret_key_env() -> String {
    "AWS_SECRET_ACCESS_KEY".into()
}
fn default_scan() -> Seconds<1000> {
    Seconds::from_millis(10_000)
}

/// Where objects go, as `[storage] url` says.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum StorageUrl {
    /// A local folder (`file:///abs/path`, or a path, relative to the
    /// working directory).
    Folder(PathBuf),
    /// An S3-compatible bucket: `s3://bucket/prefix`.
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix, without slashes at its ends; may be empty.
        prefix: String,
    },
}

impl Default for StorageUrl {
    fn default() -> Self {
        StorageUrl::Folder(PathBuf::from(DEFAULT_FOLDER))
    }
}

impl TryFrom<String> for StorageUrl {
    type Error = String;

    fn try_from(url: String) -> Result<Self, String> {
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            // S3's bucket naming rules, the part that matters for a URL.
            let bucket_ok = (3..=63).contains(&bucket.len())
                && bucket.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                });
            if !bucket_ok {
                return Err(format!(
                    "`{url}`: the bucket must be 3 to 63 lowercase letters, digits, `-` or `.`"
                ));
            }
            let prefix = prefix.trim_matches('/');
            if prefix.split('/').any(|part| part == "." || part == "..") || prefix.contains("//") {
                return Err(format!(
                    "`{url}`: the prefix has an empty, `.` or `..` part"
                ));
            }
            return Ok(StorageUrl::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.to_owned(),
            });
        }
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(format!(
                    "`{url}`: a file URL takes an absolute path (file:///srv/objects); write a relative folder without `file://`"
                ));
            }
            return Ok(StorageUrl::Folder(PathBuf::from(path)));
        }
        if url.is_empty() || url.contains("://") {
            return Err(format!(
                "`{url}`: expected `s3://bucket/prefix`, `file:///absolute/path` or a folder"
            ));
        }
        Ok(StorageUrl::Folder(PathBuf::from(url)))
    }
}

impl fmt::Display for StorageUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageUrl::Folder(path) => write!(f, "{}", path.display()),
            StorageUrl::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            StorageUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<StorageUrl, String> {
        StorageUrl::try_from(url.to_owned())
    }

    #[test]
    fn reads_folders_and_buckets() {
        assert_eq!(
            parse("s3://calls/prod/eu/").unwrap(),
            StorageUrl::S3 {
                bucket: "calls".into(),
                prefix: "prod/eu".into()
            }
        );
        assert_eq!(
            parse("s3://calls").unwrap().to_string(),
            "s3://calls",
            "no prefix"
        );
        assert_eq!(
            parse("file:///srv/objects").unwrap(),
            StorageUrl::Folder("/srv/objects".into())
        );
        assert_eq!(
            parse("data/objects").unwrap(),
            StorageUrl::Folder("data/objects".into())
        );
    }

    #[test]
    fn refuses_what_cannot_work() {
        for bad in [
            "s3://Bad_Bucket/x",
            "s3://ab",
            "s3://calls/a/../b",
            "file://relative/path",
            "gs://bucket",
            "",
        ] {
            assert!(parse(bad).is_err(), "{bad} accepted");
        }
    }
}
