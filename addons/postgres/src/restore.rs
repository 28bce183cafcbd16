//! The `logical-backup-restore` task: runs plain SQL scripts (kstash's, or `pg_dump` /
//! `pg_dumpall` plain output) like `psql -v ON_ERROR_STOP=1 -f` would: one statement at a time
//! in autocommit, `COPY … FROM stdin` data streamed from the script, `\connect` switching
//! databases. Before writing into a database that this restore did not create, it checks that
//! the database is empty; with `clean` it drops and recreates it instead.

use crate::backup::component_database;
use crate::client::Client;
use crate::conn::Connector;
use crate::error::{Error, Result};
use crate::options::RestoreOptions;
use crate::script::{self, Item, Script, Token};
use crate::sql::{excerpt, ident, literal};
use std::collections::HashSet;
use std::io::Read;

/// What a restore did.
#[derive(Debug, Clone, Default)]
pub struct RestoreReport {
    /// Statements run successfully.
    pub statements: u64,
    /// Rows loaded by COPY.
    pub rows: u64,
    /// Statements that failed and were passed over (`continueOnError`), with their position.
    pub errors: Vec<String>,
    /// Things the operator should know (tolerated errors).
    pub warnings: Vec<String>,
}

/// Statements that act on the cluster or the session, not on the current database's contents;
/// they do not make the restore check that the database is empty.
fn is_cluster_level(tokens: &[Token]) -> bool {
    let w = |i: usize| match tokens.get(i) {
        Some(Token::Word(w)) => w.as_str(),
        _ => "",
    };
    let has_on = tokens.iter().any(|t| *t == Token::Word("on".into()));
    match w(0) {
        "set" | "reset" | "begin" | "commit" | "start" | "end" => true,
        "select" => w(1) == "pg_catalog" || w(1) == "set_config",
        "create" | "drop" => matches!(w(1), "database" | "role" | "user" | "group" | "tablespace"),
        "alter" => matches!(w(1), "database" | "role" | "user" | "group" | "tablespace"),
        "comment" => w(2) == "role" || w(2) == "database" || w(2) == "tablespace",
        "grant" | "revoke" => {
            !has_on || tokens.iter().any(|t| *t == Token::Word("database".into()))
        }
        "do" => true,
        _ => false,
    }
}

/// A restore in progress over several scripts (globals first, then databases).
pub struct Restore<'a, C: Connector> {
    connector: &'a mut C,
    opts: &'a RestoreOptions,
    client: Option<Client<C::Stream>>,
    /// Databases this restore created or checked: writing into them needs no further check.
    ready: HashSet<String>,
    /// What was done so far.
    report: RestoreReport,
}

impl<'a, C: Connector> Restore<'a, C> {
    /// A restore through `connector` with `opts`.
    pub fn new(connector: &'a mut C, opts: &'a RestoreOptions) -> Self {
        Restore {
            connector,
            opts,
            client: None,
            ready: HashSet::new(),
            report: RestoreReport::default(),
        }
    }

    /// Ends the restore and returns what it did.
    pub fn finish(mut self) -> RestoreReport {
        if let Some(c) = self.client.take() {
            c.close();
        }
        self.report
    }

    fn connect(&mut self, db: &str) -> Result<()> {
        if let Some(c) = self.client.take() {
            c.close();
        }
        self.client = Some(Client::connect(self.connector, db)?);
        Ok(())
    }

    fn client(&mut self) -> &mut Client<C::Stream> {
        self.client.as_mut().expect("connected")
    }

    fn database_exists(&mut self, db: &str) -> Result<bool> {
        let rows = self.client().query(
            "checking the restore target",
            &format!(
                "SELECT 1 AS x FROM pg_database WHERE datname = {}",
                literal(db)
            ),
        )?;
        Ok(!rows.is_empty())
    }

    /// What the current database holds besides what every new database holds.
    fn contents(&mut self) -> Result<Option<String>> {
        let rows = self.client().query(
            "checking that the restore target is empty",
            "SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_') AS rels,
                    (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')) AS funcs,
                    (SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_'
                       AND t.typrelid = 0 AND t.typelem = 0) AS types,
                    (SELECT count(*) FROM pg_namespace n
                     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'public') AND n.nspname !~ '^pg_') AS schemas,
                    (SELECT count(*) FROM pg_extension WHERE extname <> 'plpgsql') AS exts,
                    (SELECT count(*) FROM pg_largeobject_metadata) AS los",
        )?;
        let r = rows.first().expect("one row");
        let mut what = Vec::new();
        for (col, name) in [
            ("rels", "relations"),
            ("funcs", "functions"),
            ("types", "types"),
            ("schemas", "schemas"),
            ("exts", "extensions"),
            ("los", "large objects"),
        ] {
            let n = r.i64(col);
            if n > 0 {
                what.push(format!("{n} {name}"));
            }
        }
        Ok(if what.is_empty() {
            None
        } else {
            Some(what.join(", "))
        })
    }

    /// Drops and recreates `db` (same encoding and locale) from a session on another database.
    fn recreate(&mut self, db: &str) -> Result<()> {
        let other = if db == "postgres" {
            "template1"
        } else {
            "postgres"
        };
        self.connect(other)?;
        let rows = self.client().query(
            &format!("reading database {db:?}"),
            &format!(
                "SELECT pg_encoding_to_char(encoding) AS enc, datcollate, datctype, pg_get_userbyid(datdba) AS owner
                 FROM pg_database WHERE datname = {}",
                literal(db)
            ),
        )?;
        let r = rows
            .first()
            .ok_or_else(|| Error::Unsupported(format!("database {db:?} vanished")))?;
        let create = format!(
            "CREATE DATABASE {} WITH TEMPLATE = template0 ENCODING = {} LC_COLLATE = {} LC_CTYPE = {} OWNER = {}",
            ident(db),
            literal(r.str("enc")),
            literal(r.str("datcollate")),
            literal(r.str("datctype")),
            ident(r.str("owner"))
        );
        let what = format!("clean: recreating database {db:?}");
        self.client()
            .execute(&what, &format!("DROP DATABASE {} WITH (FORCE)", ident(db)))?;
        self.client().execute(&what, &create)?;
        self.report.warnings.push(format!(
            "clean: database {db:?} was dropped and recreated empty"
        ));
        Ok(())
    }

    /// Makes sure `db` (the current session's database) may be written into.
    fn ensure_writable(&mut self, db: &str) -> Result<()> {
        if self.ready.contains(db) {
            return Ok(());
        }
        if let Some(what) = self.contents()? {
            if !self.opts.clean {
                return Err(Error::NotEmpty {
                    database: db.to_string(),
                    what,
                });
            }
            self.recreate(db)?;
            self.connect(db)?;
        }
        self.ready.insert(db.to_string());
        Ok(())
    }

    /// Runs one script. `name` names it in errors; a `databases/<db>.sql` component runs in
    /// `<db>` unless it connects elsewhere itself, any other in the `dbname` argument or
    /// `postgres`.
    pub fn run_script<R: Read>(&mut self, input: R, name: &str) -> Result<()> {
        let mut s = Script::new(input, name);
        let stream_db = component_database(name);
        let mut current = self
            .opts
            .database
            .clone()
            .unwrap_or_else(|| "postgres".into());
        self.connect(&current)?;
        // Session settings run before the script's first statement on a database's contents:
        // replayed when the script is switched to the database it is named after.
        let mut session_sets: Vec<String> = Vec::new();
        let mut connected_explicitly = self.opts.database.is_some();
        while let Some(item) = s.next_item()? {
            match item {
                Item::Meta {
                    command,
                    args,
                    line,
                } => match command.as_str() {
                    "connect" | "c" => {
                        let target =
                            script::connect_target(&args).ok_or_else(|| Error::ScriptSyntax {
                                stream: name.to_string(),
                                line,
                                reason: format!("cannot read the database of \\connect {args}"),
                            })?;
                        self.connect(&target).map_err(|e| Error::Script {
                            stream: name.to_string(),
                            line,
                            excerpt: format!("\\connect {args}"),
                            source: Box::new(e),
                        })?;
                        current = target;
                        session_sets.clear();
                        connected_explicitly = true;
                    }
                    // pg_dump 15.14+/16.10+ fence their output with a random key; meaningful to
                    // psql's meta-command handling only.
                    "restrict" | "unrestrict" => {}
                    "set" if args.trim_start().starts_with("ON_ERROR_STOP") => {}
                    // pg_dump writes `\encoding SQL_ASCII` before `\connect` to a database whose
                    // name is not ASCII, so that psql sends the name's bytes unchanged, and sets
                    // client_encoding again right after connecting. This client always sends
                    // names as the script's (UTF-8) bytes: nothing to do for either.
                    "encoding"
                        if args.trim().eq_ignore_ascii_case("utf8")
                            || args.trim().eq_ignore_ascii_case("sql_ascii") => {}
                    other => {
                        return Err(Error::ScriptSyntax {
                            stream: name.to_string(),
                            line,
                            reason: format!(
                                "psql meta-command \\{other} is not supported in a restore"
                            ),
                        })
                    }
                },
                Item::Statement { sql, line } => {
                    let tokens = script::tokens(&sql);
                    let cluster = is_cluster_level(&tokens);
                    if !cluster {
                        if !connected_explicitly {
                            if let Some(db) = stream_db.clone().filter(|d| *d != current) {
                                if !self.database_exists(&db)? {
                                    self.client().execute(
                                        &format!("creating database {db:?}"),
                                        &format!(
                                            "CREATE DATABASE {} WITH TEMPLATE = template0",
                                            ident(&db)
                                        ),
                                    )?;
                                    self.ready.insert(db.clone());
                                }
                                self.connect(&db)?;
                                current = db;
                                for set in &session_sets {
                                    self.client().execute("replaying session settings", set)?;
                                }
                            }
                            connected_explicitly = true;
                        }
                        let db = current.clone();
                        self.ensure_writable(&db)?;
                    }
                    let result = self.statement(&mut s, &sql, &tokens, &current);
                    match result {
                        Ok(rows) => {
                            self.report.statements += 1;
                            self.report.rows += rows;
                            let first = tokens.first();
                            if first == Some(&Token::Word("set".into()))
                                || (first == Some(&Token::Word("select".into()))
                                    && sql.contains("set_config"))
                            {
                                session_sets.push(sql.clone());
                            }
                        }
                        Err(e) => {
                            let broken =
                                self.client.as_ref().map(|c| c.is_broken()).unwrap_or(true);
                            let err = Error::Script {
                                stream: name.to_string(),
                                line,
                                excerpt: excerpt(&sql, 80),
                                source: Box::new(e),
                            };
                            if self.opts.continue_on_error && !broken {
                                self.report.errors.push(err.to_string());
                            } else {
                                return Err(err);
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Runs one statement; returns the rows a COPY loaded.
    fn statement<R: Read>(
        &mut self,
        s: &mut Script<R>,
        sql: &str,
        tokens: &[Token],
        db: &str,
    ) -> Result<u64> {
        let w = |i: usize| tokens.get(i).and_then(script::ident_of).unwrap_or_default();
        if script::is_copy_from_stdin(sql) {
            let mut data = s.copy_data()?;
            let r = self.client().copy_in("COPY", sql, &mut data);
            if r.is_err() {
                // Skip the rest of the data so that the next statement starts after `\.`.
                let mut sink = Vec::new();
                while crate::client::CopySource::next_chunk(&mut data, &mut sink)? {
                    sink.clear();
                }
            }
            return r;
        }
        if w(0) == "create" && w(1) == "database" {
            let target = w(2);
            if self.database_exists(&target)? {
                if !self.opts.clean {
                    return Err(Error::NotEmpty {
                        database: target,
                        what: "the database already exists".into(),
                    });
                }
                self.client().execute(
                    &format!("clean: dropping database {target:?}"),
                    &format!("DROP DATABASE {} WITH (FORCE)", ident(&target)),
                )?;
                self.report.warnings.push(format!(
                    "clean: database {target:?} was dropped before being restored"
                ));
            }
            self.client().execute(&format!("database {db:?}"), sql)?;
            self.ready.insert(target);
            return Ok(0);
        }
        let r = self.client().execute("statement", sql);
        if let Err(e) = &r {
            // pg_dumpall creates every role, including the one restoring (which exists).
            if matches!(w(0).as_str(), "create")
                && matches!(w(1).as_str(), "role" | "user")
                && e.server().map(|x| x.is("42710")).unwrap_or(false)
            {
                self.report.warnings.push(format!(
                    "role {} exists already; its attributes are set by the ALTER ROLE that follows",
                    w(2)
                ));
                return Ok(0);
            }
        }
        r.map(|_| 0)
    }
}

/// Restores components in order: the globals first, then the databases as given.
pub fn restore<C: Connector>(
    connector: &mut C,
    opts: &RestoreOptions,
    mut components: Vec<(String, Box<dyn Read + '_>)>,
) -> Result<RestoreReport> {
    components.sort_by_key(|(n, _)| n != crate::backup::GLOBALS_COMPONENT);
    let mut r = Restore::new(connector, opts);
    for (name, input) in components {
        r.run_script(input, &name)?;
    }
    Ok(r.finish())
}
