//! The component glue: implements [`Host`] with the kstash SDK and exports the addon.

use crate::describe;
use crate::error::AddonError;
use crate::host::{self, Host, Level, Request, Response, TransportError};
use crate::options::Task as TaskKindOpt;
use kstash_sdk::prelude::*;
use kstash_sdk::{ParamDef, ParamKind};
use std::io::{self, Read, Write};
use std::time::Duration;

struct ElasticsearchAddon;

impl Addon for ElasticsearchAddon {
    fn describe() -> Description {
        let params: Vec<ParamDef> = describe::params()
            .into_iter()
            .map(|p| ParamDef {
                name: p.name.to_string(),
                description: p.description.to_string(),
                kind: if p.boolean {
                    ParamKind::Boolean
                } else {
                    ParamKind::Text
                },
                required: false,
                default_value: p.default.map(str::to_string),
            })
            .collect();
        Description {
            name: describe::NAME.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            summary: "Elasticsearch logical backup and restore in multielasticdump's format".to_string(),
            tasks: vec![
                TaskDef {
                    name: describe::BACKUP_TASK.to_string(),
                    kind: TaskKind::Backup,
                    description: "dump indices (documents, mappings, settings, templates) into component dump".to_string(),
                    params: params.clone(),
                },
                TaskDef {
                    name: describe::RESTORE_TASK.to_string(),
                    kind: TaskKind::Restore,
                    description: "load a dump (kstash's or multielasticdump's) into the target".to_string(),
                    params,
                },
            ],
            components: vec![describe::COMPONENT.to_string()],
        }
    }

    fn backup(task: &Task) -> Result<TaskSummary, TaskError> {
        run(task, TaskKindOpt::Backup, describe::BACKUP_TASK)
    }

    fn restore(task: &Task) -> Result<TaskSummary, TaskError> {
        run(task, TaskKindOpt::Restore, describe::RESTORE_TASK)
    }
}

kstash_sdk::export_addon!(ElasticsearchAddon);

fn run(task: &Task, kind: TaskKindOpt, expected: &str) -> Result<TaskSummary, TaskError> {
    if task.name() != expected {
        return Err(TaskError::InvalidParams(format!(
            "task {:?} is not a {} task of {}",
            task.name(),
            expected,
            describe::NAME
        )));
    }
    let client = task.target()?;
    let mut host = SdkHost { client };
    let s = crate::run_task(&mut host, kind, task.params().pairs()).map_err(to_task_error)?;
    Ok(TaskSummary {
        items: s.documents,
        bytes: s.bytes,
        warnings: s.warnings,
    })
}

fn to_task_error(e: AddonError) -> TaskError {
    let msg = e.to_string();
    match e {
        AddonError::InvalidParam { .. } => TaskError::InvalidParams(msg),
        AddonError::Remote { .. } | AddonError::BulkItem { .. } => TaskError::Remote(msg),
        AddonError::Connect { .. } => TaskError::Connect(msg),
        AddonError::Io { .. } => TaskError::Io(msg),
        _ => TaskError::Other(msg),
    }
}

struct SdkHost {
    client: Client,
}

struct Out(kstash_sdk::OutputStream);

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl host::OutputStream for Out {
    fn finish(self: Box<Self>) -> io::Result<u64> {
        self.0.finish()
    }
}

impl Host for SdkHost {
    fn send(&mut self, req: &Request) -> Result<Response, TransportError> {
        let b = self
            .client
            .request(req.method.as_str(), &req.path)
            .header("accept", "application/json");
        let sent = match &req.body {
            Some(body) => b.header("content-type", req.content_type).send_bytes(body),
            None => b.send(),
        };
        let resp = sent.map_err(transport_error)?;
        let status = resp.status();
        let body = resp.bytes().map_err(transport_error)?;
        Ok(Response { status, body })
    }

    fn sleep(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        wasip2::clocks::monotonic_clock::subscribe_duration(ns).block();
    }

    fn log(&mut self, level: Level, msg: &str) {
        match level {
            Level::Debug => kstash_sdk::log::debug(msg),
            Level::Info => kstash_sdk::log::info(msg),
            Level::Warn => kstash_sdk::log::warn(msg),
            Level::Error => kstash_sdk::log::error(msg),
        }
    }

    fn progress(&mut self, done: u64, total: Option<u64>, stage: &str) {
        kstash_sdk::progress::report(done, total, "documents", stage);
    }

    fn create_output(&mut self, name: &str) -> io::Result<Box<dyn host::OutputStream>> {
        Ok(Box::new(Out(kstash_sdk::OutputStream::open(name)?)))
    }

    fn input_names(&mut self) -> io::Result<Vec<String>> {
        Ok(kstash_sdk::input_names())
    }

    fn open_input(&mut self, name: &str) -> io::Result<Box<dyn Read>> {
        Ok(Box::new(kstash_sdk::InputStream::open(name)?))
    }

    fn random(&mut self) -> u64 {
        wasip2::random::random::get_random_u64()
    }
}

fn transport_error(e: HttpError) -> TransportError {
    let retryable = matches!(e, HttpError::Transport(_) | HttpError::Body(_));
    let maybe_processed = match &e {
        HttpError::Transport(m) => host::may_have_been_processed(m),
        HttpError::Body(_) => true,
        _ => false,
    };
    TransportError {
        message: e.to_string(),
        retryable,
        maybe_processed,
    }
}
