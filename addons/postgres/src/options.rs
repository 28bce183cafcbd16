//! Task parameters, as KubeStash's `postgres-addon` defines them: `backupCmd`
//! (`pg_dumpall` | `pg_dump`), `args` (the dump or psql command's options, split like a shell
//! would), `user`, plus kstash's `clean` and `continueOnError` for restores. KubeStash's
//! `enableCache` and `scratchDir` are accepted and have no effect. Anything else is refused by
//! name before the target is contacted.

use crate::dump::DumpOptions;
use crate::error::{Error, Result};

/// Which task runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// `logical-backup`.
    Backup,
    /// `logical-backup-restore`.
    Restore,
}

impl Task {
    /// The task's KubeStash name.
    pub fn name(self) -> &'static str {
        match self {
            Task::Backup => "logical-backup",
            Task::Restore => "logical-backup-restore",
        }
    }
}

/// The dump command KubeStash would run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupCmd {
    /// Every database plus globals.
    PgDumpall,
    /// One database.
    PgDump,
}

/// A psql-style name pattern (`*` any run, `?` one character; unquoted text is lower-cased,
/// double-quoted text is taken as written), optionally `schema.name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    schema: Option<Vec<Tok>>,
    name: Vec<Tok>,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(char),
    Any,
    One,
}

fn glob(t: &[Tok], s: &[char]) -> bool {
    match t.first() {
        None => s.is_empty(),
        Some(Tok::Any) => (0..=s.len()).any(|i| glob(&t[1..], &s[i..])),
        Some(Tok::One) => !s.is_empty() && glob(&t[1..], &s[1..]),
        Some(Tok::Lit(c)) => s.first() == Some(c) && glob(&t[1..], &s[1..]),
    }
}

impl Pattern {
    /// Parses `text`.
    pub fn parse(text: &str) -> Pattern {
        let mut parts: Vec<Vec<Tok>> = vec![Vec::new()];
        let mut quoted = false;
        let chars: Vec<char> = text.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == '"' {
                if quoted && chars.get(i + 1) == Some(&'"') {
                    parts.last_mut().unwrap().push(Tok::Lit('"'));
                    i += 2;
                    continue;
                }
                quoted = !quoted;
            } else if quoted {
                parts.last_mut().unwrap().push(Tok::Lit(c));
            } else if c == '.' {
                parts.push(Vec::new());
            } else if c == '*' {
                parts.last_mut().unwrap().push(Tok::Any);
            } else if c == '?' {
                parts.last_mut().unwrap().push(Tok::One);
            } else {
                for l in c.to_lowercase() {
                    parts.last_mut().unwrap().push(Tok::Lit(l));
                }
            }
            i += 1;
        }
        let name = parts.pop().unwrap_or_default();
        let schema = parts.pop();
        Pattern {
            schema,
            name,
            text: text.to_string(),
        }
    }

    /// Matches a single name (a schema or a database) against the whole pattern.
    pub fn matches_name(&self, name: &str) -> bool {
        let s: Vec<char> = name.chars().collect();
        self.schema.is_none() && glob(&self.name, &s)
    }

    /// Matches `schema.name` (a pattern without schema matches any schema).
    pub fn matches_qualified(&self, schema: &str, name: &str) -> bool {
        let n: Vec<char> = name.chars().collect();
        let sc: Vec<char> = schema.chars().collect();
        glob(&self.name, &n) && self.schema.as_ref().map(|p| glob(p, &sc)).unwrap_or(true)
    }

    /// The pattern as given.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// Parsed backup options.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// `backupCmd`.
    pub cmd: BackupCmd,
    /// pg_dump: the database (positional or `--dbname`).
    pub database: Option<String>,
    /// pg_dumpall: `--exclude-database` patterns.
    pub exclude_databases: Vec<Pattern>,
    /// pg_dumpall `-l/--database`: where globals are read.
    pub maintenance_db: String,
    /// Write the globals script (pg_dumpall, unless `--data-only` or only schema filters).
    pub globals: bool,
    /// Only globals (`--globals-only`, `--roles-only`).
    pub globals_only: bool,
    /// `--no-role-passwords`.
    pub no_role_passwords: bool,
    /// `CREATE DATABASE` + `\connect` in each database script (pg_dumpall; pg_dump `--create`).
    pub create: bool,
    /// `DROP DATABASE IF EXISTS` before `CREATE DATABASE` (`--clean`).
    pub clean: bool,
    /// `--lock-wait-timeout`.
    pub lock_wait_timeout: Option<String>,
    /// What goes into each database's script.
    pub dump: DumpOptions,
    /// Notes for the log (ignored options).
    pub notes: Vec<String>,
}

/// Parsed restore options.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// `-d/--dbname`: where a script without `\connect` runs (default: the database the stream
    /// is named after, or `postgres`).
    pub database: Option<String>,
    /// Go on after a failing statement (`continueOnError=true` or `-v ON_ERROR_STOP=0`).
    pub continue_on_error: bool,
    /// Replace existing databases (`clean=true`).
    pub clean: bool,
    /// Notes for the log.
    pub notes: Vec<String>,
}

/// Splits `args` like a POSIX shell would (whitespace, single and double quotes, backslash).
pub fn split_args(args: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut have = false;
    let mut chars = args.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                have = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(x) => cur.push(x),
                        None => return Err(Error::param("args", "unterminated single quote")),
                    }
                }
            }
            '"' => {
                have = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(x) => cur.push(x),
                            None => return Err(Error::param("args", "trailing backslash")),
                        },
                        Some(x) => cur.push(x),
                        None => return Err(Error::param("args", "unterminated double quote")),
                    }
                }
            }
            '\\' => {
                have = true;
                if let Some(x) = chars.next() {
                    cur.push(x);
                }
            }
            c if c.is_whitespace() => {
                if have {
                    out.push(std::mem::take(&mut cur));
                    have = false;
                }
            }
            c => {
                have = true;
                cur.push(c);
            }
        }
    }
    if have {
        out.push(cur);
    }
    Ok(out)
}

/// An option from `args`: `--name=value`, `--name value`, `-x value`, `-xvalue`.
struct Args {
    words: Vec<String>,
    pos: usize,
}

enum Opt {
    /// (name as written, value if given inline)
    Flag(String, Option<String>),
    Positional(String),
}

impl Args {
    fn next(&mut self) -> Option<Opt> {
        let w = self.words.get(self.pos)?.clone();
        self.pos += 1;
        if let Some(long) = w.strip_prefix("--") {
            return Some(match long.split_once('=') {
                Some((k, v)) => Opt::Flag(format!("--{k}"), Some(v.to_string())),
                None => Opt::Flag(w.clone(), None),
            });
        }
        if w.len() > 1 && w.starts_with('-') {
            let flag = w[..2].to_string();
            let rest = &w[2..];
            return Some(Opt::Flag(
                flag,
                if rest.is_empty() {
                    None
                } else {
                    Some(rest.to_string())
                },
            ));
        }
        Some(Opt::Positional(w))
    }

    fn value(&mut self, name: &str, inline: Option<String>) -> Result<String> {
        if let Some(v) = inline {
            return Ok(v);
        }
        let v = self
            .words
            .get(self.pos)
            .cloned()
            .ok_or_else(|| Error::param(format!("args: {name}"), "needs a value"))?;
        self.pos += 1;
        Ok(v)
    }
}

fn bool_param(name: &str, v: &str) -> Result<bool> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(Error::param(name, format!("{v:?} is not true or false"))),
    }
}

/// Checks the common parameters; returns `args` and the `user` if given.
#[allow(clippy::type_complexity)]
fn common(
    params: &[(String, String)],
    extra: &[&str],
) -> Result<(String, Option<String>, Vec<(String, String)>)> {
    let mut args = String::new();
    let mut user = None;
    let mut rest = Vec::new();
    for (k, v) in params {
        match k.as_str() {
            "args" => args = v.clone(),
            "user" => user = Some(v.clone()),
            "enableCache" => {
                bool_param(k, v)?;
            }
            "scratchDir" => {}
            other if extra.contains(&other) => rest.push((k.clone(), v.clone())),
            other => {
                let mut known = vec!["args", "user", "enableCache", "scratchDir"];
                known.extend_from_slice(extra);
                return Err(Error::param(
                    other,
                    format!("unknown parameter (known: {})", known.join(", ")),
                ));
            }
        }
    }
    Ok((args, user, rest))
}

/// Checks `user` against the user the environment authenticates as.
pub fn check_user(given: Option<&str>, actual: &str) -> Result<()> {
    match given {
        Some(u) if u != actual && !(u == "postgres" && actual.is_empty()) => Err(Error::param(
            "user",
            format!("{u:?} differs from the user the target's credentials are for ({actual:?}); kstash connects only as the credentials' user"),
        )),
        _ => Ok(()),
    }
}

impl BackupOptions {
    /// Parses the backup task's parameters. `user` is checked against `actual_user`.
    pub fn from_params(params: &[(String, String)], actual_user: &str) -> Result<BackupOptions> {
        let (args, user, rest) = common(params, &["backupCmd"])?;
        let mut cmd = BackupCmd::PgDumpall;
        for (k, v) in rest {
            if k == "backupCmd" {
                cmd = match v.as_str() {
                    "pg_dumpall" => BackupCmd::PgDumpall,
                    "pg_dump" => BackupCmd::PgDump,
                    other => {
                        return Err(Error::param(
                            "backupCmd",
                            format!("{other:?} is not pg_dumpall or pg_dump"),
                        ))
                    }
                };
            }
        }
        let mut o = BackupOptions {
            cmd,
            database: None,
            exclude_databases: Vec::new(),
            maintenance_db: "postgres".into(),
            globals: cmd == BackupCmd::PgDumpall,
            globals_only: false,
            no_role_passwords: false,
            create: cmd == BackupCmd::PgDumpall,
            clean: false,
            lock_wait_timeout: None,
            dump: DumpOptions {
                large_objects: true,
                ..Default::default()
            },
            notes: Vec::new(),
        };
        let mut user_arg = None;
        let mut explicit_blobs = None;
        let mut a = Args {
            words: split_args(&args)?,
            pos: 0,
        };
        let dumpall = cmd == BackupCmd::PgDumpall;
        let tool = if dumpall { "pg_dumpall" } else { "pg_dump" };
        while let Some(opt) = a.next() {
            match opt {
                Opt::Positional(p) if !dumpall && o.database.is_none() => o.database = Some(p),
                Opt::Positional(p) => {
                    return Err(Error::param("args", format!("unexpected argument {p:?} for {tool}")))
                }
                Opt::Flag(f, inline) => match f.as_str() {
                    "-a" | "--data-only" => o.dump.data_only = true,
                    "-s" | "--schema-only" => o.dump.schema_only = true,
                    "-c" | "--clean" => o.clean = true,
                    "--if-exists" => {}
                    "-O" | "--no-owner" => o.dump.no_owner = true,
                    "-x" | "--no-privileges" | "--no-acl" => o.dump.no_privileges = true,
                    "--no-comments" => o.dump.no_comments = true,
                    "--no-unlogged-table-data" => o.dump.no_unlogged_table_data = true,
                    "--lock-wait-timeout" => o.lock_wait_timeout = Some(a.value(&f, inline)?),
                    "-U" | "--username" => user_arg = Some(a.value(&f, inline)?),
                    "-v" | "--verbose" | "--no-sync" | "-w" | "--no-password" | "--quote-all-identifiers"
                    | "--no-security-labels" | "--no-publications" | "--no-subscriptions" | "--no-tablespaces"
                    | "--no-toast-compression" | "--no-table-access-method" => {
                        o.notes.push(format!("args: {f} has no effect in kstash"))
                    }
                    "-g" | "--globals-only" | "-r" | "--roles-only" if dumpall => o.globals_only = true,
                    "--no-role-passwords" if dumpall => o.no_role_passwords = true,
                    "--exclude-database" if dumpall => o.exclude_databases.push(Pattern::parse(&a.value(&f, inline)?)),
                    "-l" | "--database" if dumpall => o.maintenance_db = a.value(&f, inline)?,
                    "-d" | "--dbname" if !dumpall => o.database = Some(a.value(&f, inline)?),
                    "-C" | "--create" if !dumpall => o.create = true,
                    "-n" | "--schema" if !dumpall => o.dump.include_schemas.push(Pattern::parse(&a.value(&f, inline)?)),
                    "-N" | "--exclude-schema" if !dumpall => {
                        o.dump.exclude_schemas.push(Pattern::parse(&a.value(&f, inline)?))
                    }
                    "-T" | "--exclude-table" if !dumpall => o.dump.exclude_tables.push(Pattern::parse(&a.value(&f, inline)?)),
                    "--exclude-table-data" if !dumpall => {
                        o.dump.exclude_table_data.push(Pattern::parse(&a.value(&f, inline)?))
                    }
                    "-b" | "--large-objects" | "--blobs" if !dumpall => explicit_blobs = Some(true),
                    "-B" | "--no-large-objects" | "--no-blobs" if !dumpall => explicit_blobs = Some(false),
                    "-F" | "--format" if !dumpall => {
                        let v = a.value(&f, inline)?;
                        if v != "p" && v != "plain" {
                            return Err(Error::param(
                                format!("args: {f}"),
                                format!("format {v:?} is not supported: kstash writes plain SQL scripts (p)"),
                            ));
                        }
                    }
                    "-E" | "--encoding" => {
                        let v = a.value(&f, inline)?;
                        if !v.eq_ignore_ascii_case("utf8") && !v.eq_ignore_ascii_case("utf-8") {
                            return Err(Error::param(format!("args: {f}"), format!("encoding {v:?} is not supported: scripts are UTF8")));
                        }
                    }
                    "-h" | "--host" | "-p" | "--port" | "-f" | "--file" => {
                        return Err(Error::param(
                            format!("args: {f}"),
                            "not allowed: the target comes from the AppBinding and the output is the snapshot",
                        ))
                    }
                    "-t" | "--table" if !dumpall => {
                        return Err(Error::param(
                            format!("args: {f}"),
                            "selecting single tables is not supported yet; use --schema/--exclude-table",
                        ))
                    }
                    "-j" | "--jobs" if !dumpall => {
                        let v = a.value(&f, inline)?;
                        if v != "1" {
                            return Err(Error::param(format!("args: {f}"), "only 1 job is supported"));
                        }
                    }
                    other => {
                        return Err(Error::param(
                            format!("args: {other}"),
                            format!("unknown or unsupported {tool} option (see docs/postgres-addon.md)"),
                        ))
                    }
                },
            }
        }
        if o.dump.data_only && o.dump.schema_only {
            return Err(Error::param(
                "args",
                "--data-only and --schema-only exclude each other",
            ));
        }
        if !dumpall && o.database.is_none() {
            return Err(Error::param(
                "args",
                "pg_dump needs the database to dump (e.g. args: mydb)",
            ));
        }
        if !dumpall {
            // pg_dump leaves large objects out when schemas are selected, unless -b.
            o.dump.large_objects = explicit_blobs.unwrap_or(o.dump.include_schemas.is_empty());
        }
        if o.dump.data_only {
            o.globals = false;
        }
        check_user(user.as_deref(), actual_user)?;
        check_user(user_arg.as_deref(), actual_user).map_err(|e| match e {
            Error::Param { reason, .. } => Error::param("args: --username", reason),
            e => e,
        })?;
        Ok(o)
    }
}

impl RestoreOptions {
    /// Parses the restore task's parameters (psql options in `args`).
    pub fn from_params(params: &[(String, String)], actual_user: &str) -> Result<RestoreOptions> {
        let (args, user, rest) = common(params, &["clean", "continueOnError"])?;
        let mut o = RestoreOptions {
            database: None,
            continue_on_error: false,
            clean: false,
            notes: Vec::new(),
        };
        for (k, v) in rest {
            match k.as_str() {
                "clean" => o.clean = bool_param(&k, &v)?,
                _ => o.continue_on_error = bool_param(&k, &v)?,
            }
        }
        let mut a = Args {
            words: split_args(&args)?,
            pos: 0,
        };
        let mut user_arg = None;
        while let Some(opt) = a.next() {
            match opt {
                Opt::Positional(p) if o.database.is_none() => o.database = Some(p),
                Opt::Positional(p) => return Err(Error::param("args", format!("unexpected argument {p:?} for psql"))),
                Opt::Flag(f, inline) => match f.as_str() {
                    "-d" | "--dbname" => o.database = Some(a.value(&f, inline)?),
                    "-U" | "--username" => user_arg = Some(a.value(&f, inline)?),
                    "-v" | "--set" | "--variable" => {
                        let v = a.value(&f, inline)?;
                        match v.split_once('=') {
                            Some(("ON_ERROR_STOP", x)) => {
                                o.continue_on_error = matches!(x.to_ascii_lowercase().as_str(), "0" | "off" | "false")
                            }
                            _ => {
                                return Err(Error::param(
                                    format!("args: {f} {v}"),
                                    "only ON_ERROR_STOP can be set",
                                ))
                            }
                        }
                    }
                    "-q" | "--quiet" | "-X" | "--no-psqlrc" | "-w" | "--no-password" | "-e" | "--echo-queries" | "-a"
                    | "--echo-all" => o.notes.push(format!("args: {f} has no effect in kstash")),
                    "-1" | "--single-transaction" => {
                        return Err(Error::param(
                            format!("args: {f}"),
                            "not supported: dump scripts create databases, which cannot run in a transaction",
                        ))
                    }
                    "-h" | "--host" | "-p" | "--port" | "-f" | "--file" => {
                        return Err(Error::param(
                            format!("args: {f}"),
                            "not allowed: the target comes from the AppBinding and the input is the snapshot",
                        ))
                    }
                    other => {
                        return Err(Error::param(
                            format!("args: {other}"),
                            "unknown or unsupported psql option (see docs/postgres-addon.md)",
                        ))
                    }
                },
            }
        }
        check_user(user.as_deref(), actual_user)?;
        check_user(user_arg.as_deref(), actual_user).map_err(|e| match e {
            Error::Param { reason, .. } => Error::param("args: --username", reason),
            e => e,
        })?;
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(kv: &[(&str, &str)]) -> Vec<(String, String)> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn patterns() {
        let x = Pattern::parse("Public.T*");
        assert!(x.matches_qualified("public", "tables"));
        assert!(!x.matches_qualified("other", "tables"));
        assert!(Pattern::parse("\"My\"*").matches_name("MyDb"));
        assert!(!Pattern::parse("\"My\"*").matches_name("mydb"));
        assert!(Pattern::parse("a?c").matches_name("abc"));
    }

    #[test]
    fn backup_params() {
        let o = BackupOptions::from_params(
            &p(&[
                ("backupCmd", "pg_dump"),
                ("args", "demo --no-owner -n 'app*'"),
            ]),
            "postgres",
        )
        .unwrap();
        assert_eq!(o.database.as_deref(), Some("demo"));
        assert!(o.dump.no_owner && !o.create && !o.dump.large_objects);
        let e = BackupOptions::from_params(&p(&[("bogus", "1")]), "postgres")
            .unwrap_err()
            .to_string();
        assert!(e.contains("parameter bogus"), "{e}");
        let e = BackupOptions::from_params(&p(&[("args", "--frobnicate")]), "postgres")
            .unwrap_err()
            .to_string();
        assert!(e.contains("args: --frobnicate"), "{e}");
        let e = BackupOptions::from_params(&p(&[("backupCmd", "pg_basebackup")]), "postgres")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("parameter backupCmd"), "{e}");
        let e = BackupOptions::from_params(&p(&[("user", "alice")]), "bob")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("parameter user"), "{e}");
        let o = BackupOptions::from_params(
            &p(&[("args", "--exclude-database=tmp* --no-role-passwords")]),
            "postgres",
        )
        .unwrap();
        assert!(o.exclude_databases[0].matches_name("tmp1") && o.no_role_passwords);
    }

    #[test]
    fn restore_params() {
        let o = RestoreOptions::from_params(
            &p(&[("args", "-d app -v ON_ERROR_STOP=0"), ("clean", "true")]),
            "postgres",
        )
        .unwrap();
        assert_eq!(o.database.as_deref(), Some("app"));
        assert!(o.continue_on_error && o.clean);
        let e = RestoreOptions::from_params(&p(&[("clean", "yes")]), "postgres")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("parameter clean"), "{e}");
    }
}
