//! Step 5, the executor: the Addon task → Function → module, its parameters, the target
//! connection and each repository resolved. A failure here is `BackupExecutorEnsured=False`.

use std::collections::BTreeMap;

use kstash_api::core::{Session, TaskReference};
use kstash_api::storage::{Repository, Snapshot};
use kstash_rules::backup_session as bsx;

use super::{PreparedTask, RepoTarget, Run, DEFAULT_INTERIM_DIR};
use crate::execute::{backend, Error};
use crate::task::module::{self, LoadedTask, TaskKind};
use crate::task::{params, report, target};

impl Run<'_> {
    /// Resolves module, target, parameters and repositories; `Err` is the executor failure.
    pub(super) async fn prepare(
        &self,
        sess: &Session,
        repos: &[Repository],
        snapshots: Vec<Snapshot>,
        conn: Result<target::Connection, target::TargetError>,
    ) -> Result<(PreparedTask, Vec<RepoTarget>), Error> {
        let (loaded, tref) = self.load(sess).await?;
        let conn = conn?;
        let vars = self.variables(sess, &loaded, tref)?;
        let fname = loaded.function.metadata.name.clone().unwrap_or_default();
        let args = params::resolve_args(&fname, &loaded.function.spec.args, &vars)?;
        tracing::debug!(session = %self.name, ?args, "KubeStash command line of the Function");
        let def = loaded
            .addon
            .description()
            .tasks
            .iter()
            .find(|t| t.name == tref.name);
        let declared = def.map(|t| t.params.clone()).unwrap_or_default();
        let components = report::components_of(def);
        let task_params = params::task_params(&tref.name, &declared, &vars)?;
        let interim = vars
            .get("interimDataDir")
            .filter(|d| !d.is_empty())
            .cloned()
            .unwrap_or_else(|| DEFAULT_INTERIM_DIR.to_string());
        let targets = self.repo_targets(sess, repos, snapshots).await?;
        let timeout = self
            .bs
            .spec
            .backup_timeout
            .as_deref()
            .filter(|t| !t.is_empty())
            .and_then(|t| bsx::parse_go_duration(t).ok());
        let limits = crate::task::limits::of_function(&loaded.function, &self.exec.ctx.task_caps)?;
        let task = PreparedTask {
            limits,
            loaded,
            task: tref.name.clone(),
            params: task_params,
            conn,
            components,
            interim,
            timeout,
        };
        Ok((task, targets))
    }

    /// The session's addon task, loaded (digest-pinned).
    async fn load<'s>(&self, sess: &'s Session) -> Result<(LoadedTask, &'s TaskReference), Error> {
        let missing = |what: &str| {
            Error::Invalid(format!(
                "{} session {}: {what}",
                self.bc_name(),
                sess.config.name
            ))
        };
        let addon = sess
            .addon
            .as_ref()
            .ok_or_else(|| missing("addon is missing"))?;
        let tref = addon
            .tasks
            .first()
            .ok_or_else(|| missing("addon.tasks is empty"))?;
        let ctx = &self.exec.ctx;
        let loaded = module::load(
            &self.client,
            &ctx.runtime,
            ctx.config.module_dir.as_deref(),
            &addon.name,
            &tref.name,
            TaskKind::Backup,
        )
        .await?;
        Ok((loaded, tref))
    }

    /// The task's variable map: its parameters, the session's values and the builtins.
    fn variables(
        &self,
        sess: &Session,
        loaded: &LoadedTask,
        tref: &TaskReference,
    ) -> Result<BTreeMap<String, String>, Error> {
        let builtins = [
            ("namespace", self.ns.clone()),
            ("backupSession", self.name.clone()),
            ("invokerKind", "BackupConfiguration".to_string()),
            (
                "invokerName",
                self.bc.metadata.name.clone().unwrap_or_default(),
            ),
        ];
        let field = format!(
            "{} session {} addon.tasks[0].params",
            self.bc_name(),
            sess.config.name
        );
        Ok(params::variables(
            &loaded.task.parameters,
            tref.params.as_ref(),
            &builtins,
            &field,
        )?)
    }

    /// Each repository resolved (storage, password) with its Snapshot.
    async fn repo_targets(
        &self,
        sess: &Session,
        repos: &[Repository],
        snapshots: Vec<Snapshot>,
    ) -> Result<Vec<RepoTarget>, Error> {
        let mut out = Vec::new();
        for (repo, snap) in repos.iter().zip(snapshots) {
            let rname = repo.metadata.name.clone().unwrap_or_default();
            let info = sess.repositories.iter().find(|r| r.name == rname);
            let enc = info.and_then(|i| i.encryption_secret.as_ref());
            let field = format!(
                "BackupSession {}/{} (encryptionSecret of repository {rname})",
                self.ns, self.name
            );
            let resolved =
                backend::resolve_repository(&self.client, repo, enc, &self.ns, &field).await?;
            out.push(RepoTarget {
                info_backend: info.and_then(|i| i.backend.clone()),
                repo: repo.clone(),
                dir: resolved.dir.clone(),
                resolved,
                snapshot: snap,
            });
        }
        Ok(out)
    }
}
