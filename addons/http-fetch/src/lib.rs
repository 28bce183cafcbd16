//! Sample kstash addon: `logical-backup` fetches one URL path of the target into a stream;
//! `logical-backup-restore` sends every stream back to the target with PUT (or POST).
//!
//! Build: `cargo build --release --target wasm32-wasip2` (in `addons/`).
//! Run:   `kstash addon run --module kstash_addon_http_fetch.wasm --task logical-backup
//!         --target-url http://127.0.0.1:8080 --param path=/data.json --out-dir out/`

use std::io::{Read, Write};

use kstash_sdk::prelude::*;

struct HttpFetch;

const BACKUP: &str = "logical-backup";
const RESTORE: &str = "logical-backup-restore";

fn param(name: &str, description: &str, kind: ParamKind, default: Option<&str>) -> ParamDef {
    ParamDef {
        name: name.to_string(),
        description: description.to_string(),
        kind,
        required: default.is_none(),
        default_value: default.map(str::to_string),
    }
}

impl Addon for HttpFetch {
    fn describe() -> Description {
        Description {
            name: "http-fetch".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            summary: "Fetches a path of the target into a stream; restores it with PUT/POST."
                .to_string(),
            tasks: vec![
                TaskDef {
                    name: BACKUP.to_string(),
                    kind: TaskKind::Backup,
                    description: "GET <target-url><path> into the stream <stream>.".to_string(),
                    params: vec![
                        param(
                            "path",
                            "Path (and query) to fetch, e.g. /data.json",
                            ParamKind::Text,
                            None,
                        ),
                        param(
                            "stream",
                            "Name of the output stream",
                            ParamKind::Text,
                            Some("fetched"),
                        ),
                    ],
                },
                TaskDef {
                    name: RESTORE.to_string(),
                    kind: TaskKind::Restore,
                    description: "Sends each input stream to <target-url><path>/<stream name>."
                        .to_string(),
                    params: vec![
                        param(
                            "path",
                            "Path prefix to upload to",
                            ParamKind::Text,
                            Some(""),
                        ),
                        param("method", "PUT or POST", ParamKind::Text, Some("PUT")),
                    ],
                },
            ],
            components: vec!["dump".to_string()],
        }
    }

    fn backup(task: &Task) -> Result<TaskSummary, TaskError> {
        let params = task.params();
        params.reject_unknown(&["path", "stream"])?;
        let path = params.required("path")?;
        let stream = params.text_or("stream", "fetched");
        log::info(&format!(
            "fetching {}{path} into {stream}",
            task.target_url()
        ));
        let resp = task.target()?.get(path).send()?.error_for_status()?;
        let total = resp.content_length();
        let mut body = resp.into_reader();
        let mut out = OutputStream::open(stream)?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut done = 0u64;
        loop {
            let n = body.read(&mut buf)?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])?;
            done += n as u64;
            progress::report(done, total, "bytes", "download");
        }
        let bytes = out.finish()?;
        Ok(TaskSummary {
            items: 1,
            bytes,
            warnings: vec![],
        })
    }

    fn restore(task: &Task) -> Result<TaskSummary, TaskError> {
        let params = task.params();
        params.reject_unknown(&["path", "method"])?;
        let prefix = params.text_or("path", "").trim_end_matches('/');
        let method = params.text_or("method", "PUT").to_ascii_uppercase();
        if method != "PUT" && method != "POST" {
            return Err(TaskError::InvalidParams(format!(
                "parameter `method`: invalid value {method:?}: expected PUT or POST"
            )));
        }
        let client = task.target()?;
        let names = input_names();
        let mut bytes = 0u64;
        for (i, name) in names.iter().enumerate() {
            let mut input = InputStream::open(name)?;
            let url_path = format!("{prefix}/{name}");
            log::info(&format!("{method} {url_path}"));
            let mut counting = CountingReader {
                inner: &mut input,
                n: 0,
            };
            client
                .request(&method, &url_path)
                .send_reader(&mut counting, None)?
                .error_for_status()?;
            bytes += counting.n;
            progress::report(i as u64 + 1, Some(names.len() as u64), "streams", "upload");
        }
        Ok(TaskSummary {
            items: names.len() as u64,
            bytes,
            warnings: vec![],
        })
    }
}

struct CountingReader<'a, R> {
    inner: &'a mut R,
    n: u64,
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

export_addon!(HttpFetch);
