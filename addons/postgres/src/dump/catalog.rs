//! Reads one database's catalogs (inside the dump's snapshot) into [`Obj`]s. The server's own
//! deparsers write the definitions (`pg_get_viewdef`, `pg_get_constraintdef`,
//! `pg_get_indexdef`, `pg_get_functiondef`, `pg_get_triggerdef`, `pg_get_ruledef`,
//! `pg_get_expr`, `format_type`, `pg_get_partkeydef`, `pg_get_statisticsobjdef`), with
//! `search_path` empty so that every name they print is schema-qualified.
//!
//! Catalog differences between versions are handled by `server_version_num` where they
//! matter (see docs/postgres-addon.md for what each version relies on).

use super::acl;
use super::objects::{class, prio, Aliases, Body, Key, Obj, Part, Section};
use super::DumpOptions;
use crate::client::{Client, Row, Rows};
use crate::conn::PgStream;
use crate::error::{Error, Result};
use crate::sql::literal;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Namespaces that are never dumped (alias `n`).
const USER_NS: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname !~ '^pg_toast' AND n.nspname !~ '^pg_temp_'";

fn not_member(catalog: &str, oid_expr: &str) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM pg_depend x WHERE x.classid = '{catalog}'::regclass \
         AND x.objid = {oid_expr} AND x.deptype = 'e')"
    )
}

/// Everything loaded for one database.
pub struct Loaded {
    /// The objects, unsorted.
    pub objs: Vec<Obj>,
    /// Qualified names of the tables whose data is dumped (for progress and locking).
    pub data_tables: Vec<String>,
}

struct Table {
    oid: u32,
    qname: String,
    schema: String,
    name: String,
    kind: char,
    persistence: char,
    owner: String,
    acl: Option<String>,
    comment: Option<String>,
    is_partition: bool,
    partbound: Option<String>,
    partkey: Option<String>,
    reloptions: Vec<String>,
    toastoptions: Vec<String>,
    rowsecurity: bool,
    forcerowsecurity: bool,
    replident: char,
    populated: bool,
    am: Option<String>,
    parents: Vec<u32>,
    viewdef: Option<String>,
    check_option: Option<String>,
}

struct Column {
    attnum: i64,
    qname: String,
    typ: String,
    notnull: bool,
    islocal: bool,
    identity: char,
    generated: char,
    defexpr: Option<String>,
    defoid: u32,
    collation: Option<String>,
    stattarget: i64,
    storage: String,
    typstorage: String,
    options: Option<String>,
    compression: String,
    acl: Option<String>,
    comment: Option<String>,
}

struct SeqInfo {
    oid: u32,
    qname: String,
    schema: String,
    name: String,
    typ: String,
    start: String,
    increment: String,
    min: String,
    max: String,
    cache: String,
    cycle: bool,
    persistence: char,
    owner_table: Option<(u32, i64)>,
    identity: bool,
}

impl SeqInfo {
    fn options(&self, with_type: bool) -> String {
        let mut s = String::new();
        if with_type {
            s.push_str(&format!("\n    AS {}", self.typ));
        }
        s.push_str(&format!(
            "\n    START WITH {}\n    INCREMENT BY {}\n    MINVALUE {}\n    MAXVALUE {}\n    CACHE {}",
            self.start, self.increment, self.min, self.max, self.cache
        ));
        if self.cycle {
            s.push_str("\n    CYCLE");
        }
        s
    }
}

/// Quotes reloption values: `name=value` → `name='value'` (with `prefix` for TOAST options).
fn reloptions(opts: &[String], prefix: &str) -> Vec<String> {
    opts.iter()
        .map(|o| match o.split_once('=') {
            Some((k, v)) => format!("{prefix}{k}={}", literal(v)),
            None => format!("{prefix}{o}"),
        })
        .collect()
}

/// Splits a text[] rendered by `array_to_string(x, E'\x01')`.
fn split_list(s: Option<&str>) -> Vec<String> {
    match s {
        None | Some("") => Vec::new(),
        Some(s) => s.split('\u{1}').map(str::to_string).collect(),
    }
}

struct Loader<'a, S: PgStream> {
    c: &'a mut Client<S>,
    v: u32,
    opts: &'a DumpOptions,
    objs: Vec<Obj>,
    aliases: Aliases,
}

/// Loads the catalogs of the database `c` is connected to (a transaction with the dump's
/// snapshot must be open). Locks every dumped table in ACCESS SHARE mode first, as pg_dump
/// does, so that no DDL can change them until the dump ends.
pub fn load<S: PgStream>(c: &mut Client<S>, version: u32, opts: &DumpOptions) -> Result<Loaded> {
    let mut l = Loader {
        c,
        v: version,
        opts,
        objs: Vec::new(),
        aliases: Aliases::default(),
    };
    l.check_unsupported()?;
    let tables = l.tables()?;
    l.lock(&tables)?;
    l.schemas()?;
    l.extensions()?;
    l.types()?;
    l.functions()?;
    l.aggregates()?;
    let data_tables = l.relations(&tables)?;
    l.indexes(&tables)?;
    l.foreign_keys(&tables)?;
    l.triggers(&tables)?;
    l.rules(&tables)?;
    l.policies(&tables)?;
    l.statistics()?;
    l.large_objects()?;
    l.default_acls()?;
    l.dependencies()?;
    l.refresh_order();
    Ok(Loaded {
        objs: l.objs,
        data_tables,
    })
}

impl<S: PgStream> Loader<'_, S> {
    fn q(&mut self, what: &str, sql: &str) -> Result<Rows> {
        self.c.query(what, sql)
    }

    fn owner(&self, object: &str, owner: &str) -> String {
        if self.opts.no_owner || owner.is_empty() {
            String::new()
        } else {
            format!("ALTER {object} OWNER TO {};\n", crate::sql::ident(owner))
        }
    }

    fn comment(&self, object: &str, text: Option<&str>) -> String {
        match text {
            Some(t) if !self.opts.no_comments => {
                format!("COMMENT ON {object} IS {};\n", literal(t))
            }
            _ => String::new(),
        }
    }

    fn acl(&self, object: &str, owner: &str, acl: Option<&str>) -> String {
        match acl {
            Some(a) if !self.opts.no_privileges => acl::statements(object, owner, a, None),
            _ => String::new(),
        }
    }

    fn schema_wanted(&self, schema: &str) -> bool {
        self.opts.schema_wanted(schema)
    }

    fn push(&mut self, o: Obj) {
        self.objs.push(o);
    }

    /// Refuses object kinds this addon does not dump, naming them: a snapshot must hold
    /// everything it claims to.
    fn check_unsupported(&mut self) -> Result<()> {
        let mut parts = vec![
            format!(
                "SELECT 'foreign table ' || c.oid::regclass::text AS what FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind = 'f' AND {USER_NS} AND {}",
                not_member("pg_class", "c.oid")
            ),
            format!(
                "SELECT 'typed table ' || c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.reloftype <> 0 AND c.relkind IN ('r','p') AND {USER_NS} AND {}",
                not_member("pg_class", "c.oid")
            ),
            format!(
                "SELECT 'base or shell type ' || t.oid::regtype::text FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace \
                 WHERE t.typtype IN ('b','p') AND t.typelem = 0 AND t.oid >= 16384 AND {USER_NS} AND {}",
                not_member("pg_type", "t.oid")
            ),
            format!(
                "SELECT 'collation ' || o.oid::regcollation::text FROM pg_collation o JOIN pg_namespace n ON n.oid = o.collnamespace \
                 WHERE o.oid >= 16384 AND {USER_NS} AND {}",
                not_member("pg_collation", "o.oid")
            ),
            format!("SELECT 'operator ' || o.oid::regoperator::text FROM pg_operator o WHERE o.oid >= 16384 AND {}", not_member("pg_operator", "o.oid")),
            format!("SELECT 'operator class ' || o.opcname FROM pg_opclass o WHERE o.oid >= 16384 AND {}", not_member("pg_opclass", "o.oid")),
            format!("SELECT 'operator family ' || o.opfname FROM pg_opfamily o WHERE o.oid >= 16384 AND {}", not_member("pg_opfamily", "o.oid")),
            format!("SELECT 'cast ' || format_type(o.castsource, NULL) || ' AS ' || format_type(o.casttarget, NULL) FROM pg_cast o WHERE o.oid >= 16384 AND NOT EXISTS (SELECT 1 FROM pg_depend i WHERE i.classid = 'pg_cast'::regclass AND i.objid = o.oid AND i.deptype = 'i') AND {}", not_member("pg_cast", "o.oid")),
            format!("SELECT 'conversion ' || o.conname FROM pg_conversion o WHERE o.oid >= 16384 AND {}", not_member("pg_conversion", "o.oid")),
            format!("SELECT 'text search configuration ' || o.cfgname FROM pg_ts_config o WHERE o.oid >= 16384 AND {}", not_member("pg_ts_config", "o.oid")),
            format!("SELECT 'text search dictionary ' || o.dictname FROM pg_ts_dict o WHERE o.oid >= 16384 AND {}", not_member("pg_ts_dict", "o.oid")),
            format!("SELECT 'text search parser ' || o.prsname FROM pg_ts_parser o WHERE o.oid >= 16384 AND {}", not_member("pg_ts_parser", "o.oid")),
            format!("SELECT 'text search template ' || o.tmplname FROM pg_ts_template o WHERE o.oid >= 16384 AND {}", not_member("pg_ts_template", "o.oid")),
            format!("SELECT 'access method ' || o.amname FROM pg_am o WHERE o.oid >= 16384 AND {}", not_member("pg_am", "o.oid")),
            format!("SELECT 'language ' || o.lanname FROM pg_language o WHERE o.oid >= 16384 AND {}", not_member("pg_language", "o.oid")),
            format!("SELECT 'transform for ' || format_type(o.trftype, NULL) FROM pg_transform o WHERE {}", not_member("pg_transform", "o.oid")),
            format!("SELECT 'foreign-data wrapper ' || o.fdwname FROM pg_foreign_data_wrapper o WHERE {}", not_member("pg_foreign_data_wrapper", "o.oid")),
            format!("SELECT 'foreign server ' || o.srvname FROM pg_foreign_server o WHERE {}", not_member("pg_foreign_server", "o.oid")),
            "SELECT 'event trigger ' || o.evtname FROM pg_event_trigger o".to_string(),
            "SELECT 'publication ' || o.pubname FROM pg_publication o".to_string(),
            "SELECT 'subscription ' || o.subname FROM pg_subscription o WHERE o.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())".to_string(),
            "SELECT 'security label on ' || o.objoid::text FROM pg_seclabel o".to_string(),
            format!(
                "SELECT 'relation in tablespace ' || t.spcname || ': ' || c.oid::regclass::text FROM pg_class c JOIN pg_tablespace t ON t.oid = c.reltablespace \
                 JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {USER_NS}"
            ),
        ];
        if self.v < 130000 {
            return Err(Error::Unsupported(format!(
                "server version {} is not supported (PostgreSQL 13 or later)",
                self.v
            )));
        }
        let sql = std::mem::take(&mut parts).join(" UNION ALL ") + " LIMIT 20";
        let rows = self.q("checking for unsupported objects", &sql)?;
        if !rows.is_empty() {
            let list: Vec<String> = rows.rows.iter().filter_map(|r| r[0].clone()).collect();
            return Err(Error::Unsupported(format!(
                "database {:?} holds objects kstash cannot dump yet: {}",
                self.c.database(),
                list.join(", ")
            )));
        }
        Ok(())
    }

    fn tables(&mut self) -> Result<Vec<Table>> {
        let sql = format!(
            "SELECT c.oid, format('%I.%I', n.nspname, c.relname) AS qname, n.nspname, c.relname, c.relkind, c.relpersistence,
                    pg_get_userbyid(c.relowner) AS owner, c.relacl::text AS acl, obj_description(c.oid, 'pg_class') AS comment,
                    c.relispartition, pg_get_expr(c.relpartbound, c.oid) AS partbound,
                    CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END AS partkey,
                    array_to_string(ARRAY(SELECT o FROM unnest(c.reloptions) o WHERE o !~ '^check_option='), E'\\x01') AS reloptions,
                    (SELECT substring(o from 14) FROM unnest(c.reloptions) o WHERE o ~ '^check_option=') AS check_option,
                    array_to_string(tc.reloptions, E'\\x01') AS toastoptions,
                    c.relrowsecurity, c.relforcerowsecurity, c.relreplident, c.relispopulated, am.amname,
                    (SELECT string_agg(i.inhparent::text, ',' ORDER BY i.inhseqno) FROM pg_inherits i WHERE i.inhrelid = c.oid) AS parents,
                    CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END AS viewdef
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             LEFT JOIN pg_class tc ON tc.oid = c.reltoastrelid
             LEFT JOIN pg_am am ON am.oid = c.relam
             WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S') AND {USER_NS} AND {}
             ORDER BY c.oid",
            not_member("pg_class", "c.oid")
        );
        let rows = self.q("listing tables", &sql)?;
        let mut out = Vec::new();
        for r in rows.iter() {
            let schema = r.string("nspname");
            if !self.schema_wanted(&schema) {
                continue;
            }
            let qname = r.string("qname");
            if self.opts.table_excluded(&schema, r.str("relname")) {
                continue;
            }
            out.push(Table {
                oid: r.oid("oid"),
                qname,
                schema,
                name: r.string("relname"),
                kind: r.str("relkind").chars().next().unwrap_or('r'),
                persistence: r.str("relpersistence").chars().next().unwrap_or('p'),
                owner: r.string("owner"),
                acl: r.opt("acl").map(str::to_string),
                comment: r.opt("comment").map(str::to_string),
                is_partition: r.bool("relispartition"),
                partbound: r.opt("partbound").map(str::to_string),
                partkey: r.opt("partkey").map(str::to_string),
                reloptions: split_list(r.opt("reloptions")),
                toastoptions: split_list(r.opt("toastoptions")),
                rowsecurity: r.bool("relrowsecurity"),
                forcerowsecurity: r.bool("relforcerowsecurity"),
                replident: r.str("relreplident").chars().next().unwrap_or('d'),
                populated: r.bool("relispopulated"),
                am: r.opt("amname").map(str::to_string),
                parents: r
                    .str("parents")
                    .split(',')
                    .filter_map(|p| p.parse().ok())
                    .collect(),
                viewdef: r
                    .opt("viewdef")
                    .map(|v| v.trim_end().trim_end_matches(';').to_string()),
                check_option: r.opt("check_option").map(str::to_string),
            });
        }
        Ok(out)
    }

    fn lock(&mut self, tables: &[Table]) -> Result<()> {
        for t in tables.iter().filter(|t| matches!(t.kind, 'r' | 'p')) {
            let what = format!("locking table {}", t.qname);
            let sql = format!("LOCK TABLE {} IN ACCESS SHARE MODE", t.qname);
            self.c.execute(&what, &sql)?;
        }
        Ok(())
    }

    fn schemas(&mut self) -> Result<()> {
        let sql = format!(
            "SELECT n.oid, n.nspname, quote_ident(n.nspname) AS q, pg_get_userbyid(n.nspowner) AS owner,
                    n.nspacl::text AS acl, obj_description(n.oid, 'pg_namespace') AS comment
             FROM pg_namespace n WHERE {USER_NS} AND {}",
            not_member("pg_namespace", "n.oid")
        );
        let rows = self.q("listing schemas", &sql)?;
        for r in rows.iter() {
            let name = r.string("nspname");
            if !self.schema_wanted(&name) {
                continue;
            }
            let q = r.string("q");
            let owner = r.string("owner");
            let mut sql = String::new();
            if name != "public" {
                sql.push_str(&format!("CREATE SCHEMA {q};\n"));
            }
            sql.push_str(&self.owner(&format!("SCHEMA {q}"), &owner));
            sql.push_str(&self.comment(&format!("SCHEMA {q}"), r.opt("comment")));
            let mut o = Obj::sql(
                Key::main(class::NAMESPACE, r.oid("oid")),
                Section::PreData,
                prio::NAMESPACE,
                "",
                &name,
                format!("SCHEMA {q}"),
                sql,
            );
            o.acl = self.acl(&format!("SCHEMA {q}"), &owner, r.opt("acl"));
            self.push(o);
        }
        Ok(())
    }

    fn extensions(&mut self) -> Result<()> {
        let rows = self.q(
            "listing extensions",
            "SELECT e.oid, e.extname, quote_ident(e.extname) AS q, quote_ident(n.nspname) AS schema, n.nspname,
                    obj_description(e.oid, 'pg_extension') AS comment
             FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.oid >= 16384",
        )?;
        for r in rows.iter() {
            let q = r.string("q");
            let mut sql = format!(
                "CREATE EXTENSION IF NOT EXISTS {q} WITH SCHEMA {};\n",
                r.str("schema")
            );
            sql.push_str(&self.comment(&format!("EXTENSION {q}"), r.opt("comment")));
            self.push(Obj::sql(
                Key::main(class::EXTENSION, r.oid("oid")),
                Section::PreData,
                prio::EXTENSION,
                "",
                r.str("extname"),
                format!("EXTENSION {q}"),
                sql,
            ));
        }
        // Members of extensions stand for their extension in dependencies.
        let rows = self.q(
            "listing extension members",
            "SELECT classid, objid, refobjid FROM pg_depend WHERE deptype = 'e' AND refclassid = 'pg_extension'::regclass",
        )?;
        for r in rows.iter() {
            self.aliases.add(
                r.oid("classid"),
                r.oid("objid"),
                class::EXTENSION,
                r.oid("refobjid"),
            );
        }
        Ok(())
    }

    fn types(&mut self) -> Result<()> {
        // Aliases first: row types, composite relations, arrays, multiranges.
        let multirange = if self.v >= 140000 {
            "(SELECT r.rngtypid FROM pg_range r WHERE r.rngmultitypid = t.oid)"
        } else {
            "NULL::oid"
        };
        let sql = format!(
            "SELECT t.oid, t.typrelid, t.typelem, t.typcategory, c.relkind, {multirange} AS rng
             FROM pg_type t LEFT JOIN pg_class c ON c.oid = t.typrelid WHERE t.oid >= 16384"
        );
        let rows = self.q("listing type aliases", &sql)?;
        for r in rows.iter() {
            let oid = r.oid("oid");
            let relid = r.oid("typrelid");
            if relid != 0 {
                if r.str("relkind") == "c" {
                    self.aliases.add(class::CLASS, relid, class::TYPE, oid);
                } else {
                    self.aliases.add(class::TYPE, oid, class::CLASS, relid);
                }
            } else if r.str("typcategory") == "A" && r.oid("typelem") != 0 {
                self.aliases
                    .add(class::TYPE, oid, class::TYPE, r.oid("typelem"));
            } else if r.oid("rng") != 0 {
                self.aliases
                    .add(class::TYPE, oid, class::TYPE, r.oid("rng"));
            }
        }

        let notnull_in_catalog = self.v >= 170000;
        let sql = format!(
            "SELECT t.oid, t.typname, n.nspname, format('%I.%I', n.nspname, t.typname) AS q, t.typtype,
                    pg_get_userbyid(t.typowner) AS owner, t.typacl::text AS acl, obj_description(t.oid, 'pg_type') AS comment,
                    t.typrelid, format_type(t.typbasetype, t.typtypmod) AS basetype, t.typnotnull,
                    pg_get_expr(t.typdefaultbin, 0) AS typdefault,
                    (SELECT format('%I.%I', cn.nspname, co.collname) FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace
                      WHERE co.oid = t.typcollation AND t.typcollation <> COALESCE((SELECT b.typcollation FROM pg_type b WHERE b.oid = t.typbasetype), 0)) AS collation
             FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
             LEFT JOIN pg_class c ON c.oid = t.typrelid
             WHERE t.typtype IN ('e', 'c', 'd', 'r') AND (t.typtype <> 'c' OR c.relkind = 'c')
               AND {USER_NS} AND {}",
            not_member("pg_type", "t.oid")
        );
        let types = self.q("listing types", &sql)?;
        if types.is_empty() {
            return Ok(());
        }
        let mut enums: HashMap<u32, Vec<String>> = HashMap::new();
        for r in self
            .q(
                "listing enum labels",
                "SELECT enumtypid, enumlabel FROM pg_enum ORDER BY enumtypid, enumsortorder",
            )?
            .iter()
        {
            enums
                .entry(r.oid("enumtypid"))
                .or_default()
                .push(literal(r.str("enumlabel")));
        }
        let mut attrs: HashMap<u32, Vec<(String, String, Option<String>)>> = HashMap::new();
        for r in self
            .q(
                "listing composite type attributes",
                "SELECT a.attrelid, quote_ident(a.attname) AS q, format_type(a.atttypid, a.atttypmod) AS typ,
                        (SELECT format('%I.%I', cn.nspname, co.collname) FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace
                          WHERE co.oid = a.attcollation AND a.attcollation <> ty.typcollation) AS collation,
                        col_description(a.attrelid, a.attnum) AS comment
                 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_type ty ON ty.oid = a.atttypid
                 WHERE c.relkind = 'c' AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attrelid, a.attnum",
            )?
            .iter()
        {
            let mut def = format!("{} {}", r.str("q"), r.str("typ"));
            if let Some(c) = r.opt("collation") {
                def.push_str(&format!(" COLLATE {c}"));
            }
            attrs
                .entry(r.oid("attrelid"))
                .or_default()
                .push((r.string("q"), def, r.opt("comment").map(str::to_string)));
        }
        let mut ranges: HashMap<u32, String> = HashMap::new();
        let mr = if self.v >= 140000 {
            "format_type(r.rngmultitypid, NULL)"
        } else {
            "NULL"
        };
        let sql = format!(
            "SELECT r.rngtypid, format_type(r.rngsubtype, NULL) AS subtype,
                    CASE WHEN NOT o.opcdefault THEN format('%I.%I', opn.nspname, o.opcname) END AS opclass,
                    CASE WHEN r.rngcollation <> 0 AND r.rngcollation <> st.typcollation THEN
                      (SELECT format('%I.%I', cn.nspname, co.collname) FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = r.rngcollation) END AS collation,
                    NULLIF(r.rngcanonical::oid, 0)::regproc::text AS canonical, NULLIF(r.rngsubdiff::oid, 0)::regproc::text AS subdiff,
                    {mr} AS multirange
             FROM pg_range r JOIN pg_opclass o ON o.oid = r.rngsubopc JOIN pg_namespace opn ON opn.oid = o.opcnamespace
             JOIN pg_type st ON st.oid = r.rngsubtype"
        );
        for r in self.q("listing range types", &sql)?.iter() {
            let mut parts = vec![format!("subtype = {}", r.str("subtype"))];
            if let Some(x) = r.opt("opclass") {
                parts.push(format!("subtype_opclass = {x}"));
            }
            if let Some(x) = r.opt("collation") {
                parts.push(format!("collation = {x}"));
            }
            if let Some(x) = r.opt("canonical") {
                parts.push(format!("canonical = {x}"));
            }
            if let Some(x) = r.opt("subdiff") {
                parts.push(format!("subtype_diff = {x}"));
            }
            if let Some(x) = r.opt("multirange") {
                parts.push(format!("multirange_type_name = {x}"));
            }
            ranges.insert(r.oid("rngtypid"), parts.join(",\n    "));
        }
        let notnull_sel = if notnull_in_catalog { "'n'" } else { "'-'" };
        let mut domain_cons: HashMap<u32, Vec<Row<'_>>> = HashMap::new();
        let cons = self.q(
            "listing domain constraints",
            &format!(
                "SELECT co.oid, co.contypid, quote_ident(co.conname) AS q, co.contype, pg_get_constraintdef(co.oid) AS def,
                        co.convalidated, obj_description(co.oid, 'pg_constraint') AS comment
                 FROM pg_constraint co WHERE co.contypid <> 0 AND co.contype IN ('c', {notnull_sel}) ORDER BY co.contypid, co.conname"
            ),
        )?;
        for r in cons.iter() {
            domain_cons.entry(r.oid("contypid")).or_default().push(r);
        }
        let mut new_objs = Vec::new();
        for r in types.iter() {
            let schema = r.string("nspname");
            if !self.schema_wanted(&schema) {
                continue;
            }
            let oid = r.oid("oid");
            let q = r.string("q");
            let owner = r.string("owner");
            let kind = r.str("typtype");
            let (word, mut sql) = match kind {
                "e" => (
                    "TYPE",
                    format!(
                        "CREATE TYPE {q} AS ENUM (\n    {}\n);\n",
                        enums
                            .get(&oid)
                            .map(|v| v.join(",\n    "))
                            .unwrap_or_default()
                    ),
                ),
                "c" => {
                    let a = attrs.get(&r.oid("typrelid")).cloned().unwrap_or_default();
                    let mut s = format!(
                        "CREATE TYPE {q} AS (\n    {}\n);\n",
                        a.iter()
                            .map(|x| x.1.clone())
                            .collect::<Vec<_>>()
                            .join(",\n    ")
                    );
                    for (col, _, comment) in &a {
                        s.push_str(&self.comment(&format!("COLUMN {q}.{col}"), comment.as_deref()));
                    }
                    ("TYPE", s)
                }
                "r" => (
                    "TYPE",
                    format!(
                        "CREATE TYPE {q} AS RANGE (\n    {}\n);\n",
                        ranges.get(&oid).cloned().unwrap_or_default()
                    ),
                ),
                _ => {
                    let mut s = format!("CREATE DOMAIN {q} AS {}", r.str("basetype"));
                    if let Some(c) = r.opt("collation") {
                        s.push_str(&format!(" COLLATE {c}"));
                    }
                    if let Some(d) = r.opt("typdefault") {
                        s.push_str(&format!(" DEFAULT {d}"));
                    }
                    if !notnull_in_catalog && r.bool("typnotnull") {
                        s.push_str(" NOT NULL");
                    }
                    let mut later = String::new();
                    let mut comments = String::new();
                    for c in domain_cons.get(&oid).map(|v| v.as_slice()).unwrap_or(&[]) {
                        let cq = c.str("q");
                        if c.bool("convalidated") {
                            s.push_str(&format!("\n\tCONSTRAINT {cq} {}", c.str("def")));
                        } else {
                            later.push_str(&format!(
                                "ALTER DOMAIN {q} ADD CONSTRAINT {cq} {};\n",
                                c.str("def")
                            ));
                        }
                        comments.push_str(
                            &self.comment(
                                &format!("CONSTRAINT {cq} ON DOMAIN {q}"),
                                c.opt("comment"),
                            ),
                        );
                    }
                    s.push_str(";\n");
                    if !later.is_empty() {
                        let mut o = Obj::sql(
                            Key::part(class::TYPE, oid, Part::Extra),
                            Section::PostData,
                            prio::CONSTRAINT,
                            &schema,
                            r.str("typname"),
                            format!("DOMAIN CONSTRAINTS {q}"),
                            later,
                        );
                        o.deps.insert(Key::main(class::TYPE, oid));
                        new_objs.push(o);
                    }
                    s.push_str(&comments);
                    ("DOMAIN", s)
                }
            };
            sql.push_str(&self.owner(&format!("{word} {q}"), &owner));
            sql.push_str(&self.comment(&format!("{word} {q}"), r.opt("comment")));
            let mut o = Obj::sql(
                Key::main(class::TYPE, oid),
                Section::PreData,
                prio::TYPE,
                &schema,
                r.str("typname"),
                format!("{word} {q}"),
                sql,
            );
            o.acl = self.acl(&format!("{word} {q}"), &owner, r.opt("acl"));
            new_objs.push(o);
        }
        for c in cons.iter() {
            self.aliases.add(
                class::CONSTRAINT,
                c.oid("oid"),
                class::TYPE,
                c.oid("contypid"),
            );
        }
        for o in new_objs {
            self.push(o);
        }
        Ok(())
    }

    fn functions(&mut self) -> Result<()> {
        let sql = format!(
            "SELECT p.oid, p.proname, n.nspname, p.prokind, pg_get_functiondef(p.oid) AS def,
                    format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)) AS sig,
                    pg_get_userbyid(p.proowner) AS owner, p.proacl::text AS acl, obj_description(p.oid, 'pg_proc') AS comment
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE p.prokind IN ('f', 'p', 'w') AND {USER_NS} AND {}
               AND NOT EXISTS (SELECT 1 FROM pg_depend i WHERE i.classid = 'pg_proc'::regclass AND i.objid = p.oid AND i.deptype = 'i')",
            not_member("pg_proc", "p.oid")
        );
        let rows = self.q("listing functions", &sql)?;
        for r in rows.iter() {
            let schema = r.string("nspname");
            if !self.schema_wanted(&schema) {
                continue;
            }
            let word = if r.str("prokind") == "p" {
                "PROCEDURE"
            } else {
                "FUNCTION"
            };
            let sig = r.string("sig");
            let owner = r.string("owner");
            let mut sql = r.str("def").trim_end().to_string();
            sql.push_str(";\n");
            sql.push_str(&self.owner(&format!("{word} {sig}"), &owner));
            sql.push_str(&self.comment(&format!("{word} {sig}"), r.opt("comment")));
            let mut o = Obj::sql(
                Key::main(class::PROC, r.oid("oid")),
                Section::PreData,
                prio::FUNC,
                &schema,
                &format!("{}({sig})", r.str("proname")),
                format!("{word} {sig}"),
                sql,
            );
            o.acl = self.acl(&format!("{word} {sig}"), &owner, r.opt("acl"));
            self.push(o);
        }
        Ok(())
    }

    fn aggregates(&mut self) -> Result<()> {
        let sql = format!(
            "SELECT p.oid, p.proname, n.nspname, format('%I.%I', n.nspname, p.proname) AS q,
                    pg_get_function_arguments(p.oid) AS args, pg_get_function_identity_arguments(p.oid) AS idargs,
                    p.oid::regprocedure::text AS regproc,
                    a.aggkind, a.aggtransfn::text AS sfunc, format_type(a.aggtranstype, NULL) AS stype, a.aggtransspace,
                    NULLIF(a.aggfinalfn::oid, 0)::regproc::text AS finalfn, a.aggfinalextra, a.aggfinalmodify,
                    NULLIF(a.aggcombinefn::oid, 0)::regproc::text AS combinefn,
                    NULLIF(a.aggserialfn::oid, 0)::regproc::text AS serialfn,
                    NULLIF(a.aggdeserialfn::oid, 0)::regproc::text AS deserialfn,
                    NULLIF(a.aggmtransfn::oid, 0)::regproc::text AS msfunc,
                    NULLIF(a.aggminvtransfn::oid, 0)::regproc::text AS minvfunc,
                    CASE WHEN a.aggmtranstype <> 0 THEN format_type(a.aggmtranstype, NULL) END AS mstype, a.aggmtransspace,
                    NULLIF(a.aggmfinalfn::oid, 0)::regproc::text AS mfinalfn, a.aggmfinalextra, a.aggmfinalmodify,
                    a.agginitval, a.aggminitval, NULLIF(a.aggsortop, 0)::regoperator::text AS sortop, p.proparallel,
                    pg_get_userbyid(p.proowner) AS owner, p.proacl::text AS acl, obj_description(p.oid, 'pg_proc') AS comment
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_aggregate a ON a.aggfnoid = p.oid
             WHERE p.prokind = 'a' AND {USER_NS} AND {}",
            not_member("pg_proc", "p.oid")
        );
        let rows = self.q("listing aggregates", &sql)?;
        let modify = |c: &str| match c {
            "s" => "SHAREABLE",
            "w" => "READ_WRITE",
            _ => "READ_ONLY",
        };
        for r in rows.iter() {
            let schema = r.string("nspname");
            if !self.schema_wanted(&schema) {
                continue;
            }
            let q = r.string("q");
            let args = if r.str("args").is_empty() {
                "*".to_string()
            } else {
                r.string("args")
            };
            let idargs = if r.str("idargs").is_empty() {
                "*".to_string()
            } else {
                r.string("idargs")
            };
            let mut parts = vec![
                format!("SFUNC = {}", r.str("sfunc")),
                format!("STYPE = {}", r.str("stype")),
            ];
            if r.i64("aggtransspace") != 0 {
                parts.push(format!("SSPACE = {}", r.str("aggtransspace")));
            }
            if let Some(f) = r.opt("finalfn") {
                parts.push(format!("FINALFUNC = {f}"));
                if r.bool("aggfinalextra") {
                    parts.push("FINALFUNC_EXTRA".into());
                }
            }
            parts.push(format!(
                "FINALFUNC_MODIFY = {}",
                modify(r.str("aggfinalmodify"))
            ));
            for (k, col) in [
                ("COMBINEFUNC", "combinefn"),
                ("SERIALFUNC", "serialfn"),
                ("DESERIALFUNC", "deserialfn"),
            ] {
                if let Some(f) = r.opt(col) {
                    parts.push(format!("{k} = {f}"));
                }
            }
            if let Some(v) = r.opt("agginitval") {
                parts.push(format!("INITCOND = {}", literal(v)));
            }
            if let Some(f) = r.opt("msfunc") {
                parts.push(format!("MSFUNC = {f}"));
                if let Some(f) = r.opt("minvfunc") {
                    parts.push(format!("MINVFUNC = {f}"));
                }
                if let Some(t) = r.opt("mstype") {
                    parts.push(format!("MSTYPE = {t}"));
                }
                if r.i64("aggmtransspace") != 0 {
                    parts.push(format!("MSSPACE = {}", r.str("aggmtransspace")));
                }
                if let Some(f) = r.opt("mfinalfn") {
                    parts.push(format!("MFINALFUNC = {f}"));
                    if r.bool("aggmfinalextra") {
                        parts.push("MFINALFUNC_EXTRA".into());
                    }
                }
                parts.push(format!(
                    "MFINALFUNC_MODIFY = {}",
                    modify(r.str("aggmfinalmodify"))
                ));
                if let Some(v) = r.opt("aggminitval") {
                    parts.push(format!("MINITCOND = {}", literal(v)));
                }
            }
            if let Some(op) = r.opt("sortop") {
                // regoperator prints `op(left,right)`; SORTOP wants the operator alone.
                let name = op.split('(').next().unwrap_or(op);
                parts.push(format!("SORTOP = OPERATOR({name})"));
            }
            match r.str("proparallel") {
                "s" => parts.push("PARALLEL = safe".into()),
                "r" => parts.push("PARALLEL = restricted".into()),
                _ => {}
            }
            if r.str("aggkind") == "h" {
                parts.push("HYPOTHETICAL".into());
            }
            let owner = r.string("owner");
            let mut sql = format!(
                "CREATE AGGREGATE {q}({args}) (\n    {}\n);\n",
                parts.join(",\n    ")
            );
            sql.push_str(&self.owner(&format!("AGGREGATE {q}({idargs})"), &owner));
            sql.push_str(&self.comment(&format!("AGGREGATE {q}({idargs})"), r.opt("comment")));
            let mut o = Obj::sql(
                Key::main(class::PROC, r.oid("oid")),
                Section::PreData,
                prio::AGG,
                &schema,
                r.str("proname"),
                format!("AGGREGATE {q}({idargs})"),
                sql,
            );
            o.acl = self.acl(
                &format!("FUNCTION {}", r.str("regproc")),
                &owner,
                r.opt("acl"),
            );
            self.push(o);
        }
        Ok(())
    }

    /// Tables, views, materialized views and sequences, with their columns, defaults, CHECK
    /// constraints, identity, partitioning and inheritance; and the data entries.
    fn relations(&mut self, tables: &[Table]) -> Result<Vec<String>> {
        let wanted: HashSet<u32> = tables.iter().map(|t| t.oid).collect();
        let by_oid: HashMap<u32, &Table> = tables.iter().map(|t| (t.oid, t)).collect();
        let compression = if self.v >= 140000 {
            "a.attcompression::text"
        } else {
            "''"
        };
        let sql = format!(
            "SELECT a.attrelid, a.attnum, quote_ident(a.attname) AS q, format_type(a.atttypid, a.atttypmod) AS typ,
                    a.attnotnull, a.attislocal, a.attidentity, a.attgenerated, a.attisdropped,
                    pg_get_expr(ad.adbin, ad.adrelid) AS defexpr, ad.oid AS defoid,
                    CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation THEN
                      (SELECT format('%I.%I', cn.nspname, co.collname) FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = a.attcollation) END AS collation,
                    COALESCE(a.attstattarget, -1) AS stattarget, a.attstorage, t.typstorage,
                    array_to_string(a.attoptions, ', ') AS options, {compression} AS compression,
                    a.attacl::text AS acl, col_description(a.attrelid, a.attnum) AS comment
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             LEFT JOIN pg_type t ON t.oid = a.atttypid
             LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
             WHERE a.attnum > 0 AND c.relkind IN ('r', 'p', 'v', 'm') AND {USER_NS}
             ORDER BY a.attrelid, a.attnum"
        );
        let rows = self.q("listing columns", &sql)?;
        let mut columns: BTreeMap<u32, Vec<Column>> = BTreeMap::new();
        for r in rows.iter() {
            let rel = r.oid("attrelid");
            if !wanted.contains(&rel) || r.bool("attisdropped") {
                continue;
            }
            columns.entry(rel).or_default().push(Column {
                attnum: r.i64("attnum"),
                qname: r.string("q"),
                typ: r.string("typ"),
                notnull: r.bool("attnotnull"),
                islocal: r.bool("attislocal"),
                identity: r.str("attidentity").chars().next().unwrap_or('\0'),
                generated: r.str("attgenerated").chars().next().unwrap_or('\0'),
                defexpr: r.opt("defexpr").map(str::to_string),
                defoid: r.oid("defoid"),
                collation: r.opt("collation").map(str::to_string),
                stattarget: r.i64("stattarget"),
                storage: r.string("attstorage"),
                typstorage: r.string("typstorage"),
                options: r
                    .opt("options")
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
                compression: r.string("compression"),
                acl: r.opt("acl").map(str::to_string),
                comment: r.opt("comment").map(str::to_string),
            });
        }
        // CHECK constraints of tables.
        let rows = self.q(
            "listing check constraints",
            "SELECT co.oid, co.conrelid, quote_ident(co.conname) AS q, pg_get_constraintdef(co.oid) AS def,
                    co.conislocal, co.convalidated, obj_description(co.oid, 'pg_constraint') AS comment
             FROM pg_constraint co WHERE co.contype = 'c' AND co.conrelid <> 0 ORDER BY co.conrelid, co.conname",
        )?;
        let mut checks: HashMap<u32, Vec<Row<'_>>> = HashMap::new();
        for r in rows.iter() {
            if wanted.contains(&r.oid("conrelid")) {
                checks.entry(r.oid("conrelid")).or_default().push(r);
            }
        }
        // Sequences: standalone, owned by a column, or identity.
        let rows = self.q(
            "listing sequences",
            "SELECT s.seqrelid, format('%I.%I', n.nspname, c.relname) AS q, n.nspname, c.relname,
                    format_type(s.seqtypid, NULL) AS typ, s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle,
                    c.relpersistence, d.refobjid AS tbl, d.refobjsubid AS attnum, d.deptype
             FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.seqrelid
               AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')",
        )?;
        let mut seqs: Vec<SeqInfo> = Vec::new();
        for r in rows.iter() {
            let tbl = r.oid("tbl");
            let identity = r.str("deptype") == "i";
            if !(wanted.contains(&r.oid("seqrelid")) || identity && wanted.contains(&tbl)) {
                continue;
            }
            seqs.push(SeqInfo {
                oid: r.oid("seqrelid"),
                qname: r.string("q"),
                schema: r.string("nspname"),
                name: r.string("relname"),
                typ: r.string("typ"),
                start: r.string("seqstart"),
                increment: r.string("seqincrement"),
                min: r.string("seqmin"),
                max: r.string("seqmax"),
                cache: r.string("seqcache"),
                cycle: r.bool("seqcycle"),
                persistence: r.str("relpersistence").chars().next().unwrap_or('p'),
                owner_table: if tbl != 0 {
                    Some((tbl, r.i64("attnum")))
                } else {
                    None
                },
                identity,
            });
        }
        let identity_of: HashMap<(u32, i64), &SeqInfo> = seqs
            .iter()
            .filter(|s| s.identity)
            .filter_map(|s| s.owner_table.map(|k| (k, s)))
            .collect();

        let mut new_objs = Vec::new();
        let mut data_tables = Vec::new();
        for t in tables {
            if t.kind == 'S' {
                continue;
            }
            let cols = columns.get(&t.oid).map(|v| v.as_slice()).unwrap_or(&[]);
            let key = Key::main(class::CLASS, t.oid);
            let (word, mut sql) = match t.kind {
                'v' => {
                    let mut s = format!("CREATE VIEW {}", t.qname);
                    if !t.reloptions.is_empty() {
                        s.push_str(&format!(
                            " WITH ({})",
                            reloptions(&t.reloptions, "").join(", ")
                        ));
                    }
                    s.push_str(&format!(" AS\n{}", t.viewdef.clone().unwrap_or_default()));
                    if let Some(co) = &t.check_option {
                        s.push_str(&format!("\n  WITH {} CHECK OPTION", co.to_uppercase()));
                    }
                    s.push_str(";\n");
                    ("VIEW", s)
                }
                'm' => {
                    let mut s = format!("CREATE MATERIALIZED VIEW {}", t.qname);
                    if let Some(am) = t.am.as_deref().filter(|a| *a != "heap") {
                        s.push_str(&format!(" USING {am}"));
                    }
                    if !t.reloptions.is_empty() {
                        s.push_str(&format!(
                            " WITH ({})",
                            reloptions(&t.reloptions, "").join(", ")
                        ));
                    }
                    s.push_str(&format!(
                        " AS\n{}\n  WITH NO DATA;\n",
                        t.viewdef.clone().unwrap_or_default()
                    ));
                    ("MATERIALIZED VIEW", s)
                }
                _ => (
                    "TABLE",
                    self.create_table(
                        t,
                        cols,
                        checks.get(&t.oid).map(|v| v.as_slice()).unwrap_or(&[]),
                        &identity_of,
                        &by_oid,
                    ),
                ),
            };
            // Column settings, also of inherited columns.
            let alter = if t.kind == 'm' {
                format!("ALTER MATERIALIZED VIEW {}", t.qname)
            } else if t.kind == 'v' {
                format!("ALTER VIEW {}", t.qname)
            } else {
                format!("ALTER TABLE ONLY {}", t.qname)
            };
            for c in cols {
                if t.kind == 'v' {
                    break;
                }
                if !c.islocal && !t.is_partition && c.notnull && t.kind != 'm' {
                    let parents_have = t.parents.iter().any(|p| {
                        columns
                            .get(p)
                            .and_then(|pc| pc.iter().find(|x| x.qname == c.qname))
                            .map(|x| x.notnull)
                            .unwrap_or(false)
                    });
                    if !parents_have {
                        sql.push_str(&format!("{alter} ALTER COLUMN {} SET NOT NULL;\n", c.qname));
                    }
                }
                if c.stattarget >= 0 {
                    sql.push_str(&format!(
                        "{alter} ALTER COLUMN {} SET STATISTICS {};\n",
                        c.qname, c.stattarget
                    ));
                }
                if c.storage != c.typstorage && !c.typstorage.is_empty() {
                    let st = match c.storage.as_str() {
                        "p" => "PLAIN",
                        "e" => "EXTERNAL",
                        "m" => "MAIN",
                        _ => "EXTENDED",
                    };
                    sql.push_str(&format!(
                        "{alter} ALTER COLUMN {} SET STORAGE {st};\n",
                        c.qname
                    ));
                }
                if let Some(o) = &c.options {
                    sql.push_str(&format!("{alter} ALTER COLUMN {} SET ({o});\n", c.qname));
                }
                match c.compression.as_str() {
                    "p" => sql.push_str(&format!(
                        "{alter} ALTER COLUMN {} SET COMPRESSION pglz;\n",
                        c.qname
                    )),
                    "l" => sql.push_str(&format!(
                        "{alter} ALTER COLUMN {} SET COMPRESSION lz4;\n",
                        c.qname
                    )),
                    _ => {}
                }
            }
            sql.push_str(&self.owner(&format!("{word} {}", t.qname), &t.owner));
            sql.push_str(&self.comment(&format!("{word} {}", t.qname), t.comment.as_deref()));
            for c in cols {
                sql.push_str(&self.comment(
                    &format!("COLUMN {}.{}", t.qname, c.qname),
                    c.comment.as_deref(),
                ));
            }
            for ch in checks.get(&t.oid).map(|v| v.as_slice()).unwrap_or(&[]) {
                if ch.bool("convalidated") && (ch.bool("conislocal") || t.is_partition) {
                    sql.push_str(&self.comment(
                        &format!("CONSTRAINT {} ON {}", ch.str("q"), t.qname),
                        ch.opt("comment"),
                    ));
                }
            }
            let mut o = Obj::sql(
                key,
                Section::PreData,
                prio::TABLE,
                &t.schema,
                &t.name,
                format!("{word} {}", t.qname),
                sql,
            );
            for p in &t.parents {
                o.deps.insert(Key::main(class::CLASS, *p));
            }
            let mut acl = self.acl(&format!("TABLE {}", t.qname), &t.owner, t.acl.as_deref());
            if !self.opts.no_privileges {
                for c in cols {
                    if let Some(a) = &c.acl {
                        acl.push_str(&acl::statements(
                            &format!("TABLE {}", t.qname),
                            &t.owner,
                            a,
                            Some(&c.qname),
                        ));
                    }
                }
            }
            o.acl = acl;
            new_objs.push(o);

            // Inline CHECK constraints stand for their table in dependencies; NOT VALID ones
            // are added after the data.
            for ch in checks.get(&t.oid).map(|v| v.as_slice()).unwrap_or(&[]) {
                let coid = ch.oid("oid");
                if ch.bool("convalidated") {
                    self.aliases
                        .add(class::CONSTRAINT, coid, class::CLASS, t.oid);
                } else if ch.bool("conislocal") {
                    let mut s = format!(
                        "ALTER TABLE {} ADD CONSTRAINT {} {};\n",
                        t.qname,
                        ch.str("q"),
                        ch.str("def")
                    );
                    s.push_str(&self.comment(
                        &format!("CONSTRAINT {} ON {}", ch.str("q"), t.qname),
                        ch.opt("comment"),
                    ));
                    let mut o = Obj::sql(
                        Key::main(class::CONSTRAINT, coid),
                        Section::PostData,
                        prio::CONSTRAINT,
                        &t.schema,
                        ch.str("q"),
                        format!("CONSTRAINT {} ON {}", ch.str("q"), t.qname),
                        s,
                    );
                    o.deps.insert(key);
                    new_objs.push(o);
                }
            }
            // Defaults (not generation expressions), each its own entry after the table.
            for c in cols {
                if c.generated != '\0' || c.defoid == 0 {
                    continue;
                }
                if let Some(d) = &c.defexpr {
                    let s = format!("{alter} ALTER COLUMN {} SET DEFAULT {d};\n", c.qname);
                    let mut o = Obj::sql(
                        Key::main(class::ATTRDEF, c.defoid),
                        Section::PreData,
                        prio::ATTRDEF,
                        &t.schema,
                        &format!("{} {}", t.name, c.qname),
                        format!("DEFAULT {}.{}", t.qname, c.qname),
                        s,
                    );
                    o.deps.insert(key);
                    new_objs.push(o);
                }
            }
            // Partitions are created alone, then attached.
            if t.is_partition {
                if let (Some(parent), Some(bound)) = (t.parents.first(), &t.partbound) {
                    if let Some(p) = by_oid.get(parent) {
                        let s = format!(
                            "ALTER TABLE ONLY {} ATTACH PARTITION {} {bound};\n",
                            p.qname, t.qname
                        );
                        let mut o = Obj::sql(
                            Key::part(class::CLASS, t.oid, Part::Attach),
                            Section::PreData,
                            prio::TABLE_ATTACH,
                            &t.schema,
                            &t.name,
                            format!("TABLE ATTACH {}", t.qname),
                            s,
                        );
                        o.deps.insert(key);
                        o.deps.insert(Key::main(class::CLASS, *parent));
                        new_objs.push(o);
                    }
                }
            }
            // Table settings after post-data objects: row security, replica identity FULL/NOTHING.
            let mut extra = String::new();
            if t.rowsecurity {
                extra.push_str(&format!(
                    "ALTER TABLE {} ENABLE ROW LEVEL SECURITY;\n",
                    t.qname
                ));
            }
            if t.forcerowsecurity {
                extra.push_str(&format!(
                    "ALTER TABLE ONLY {} FORCE ROW LEVEL SECURITY;\n",
                    t.qname
                ));
            }
            match t.replident {
                'f' => extra.push_str(&format!(
                    "ALTER TABLE ONLY {} REPLICA IDENTITY FULL;\n",
                    t.qname
                )),
                'n' if t.kind != 'v' && t.kind != 'm' => extra.push_str(&format!(
                    "ALTER TABLE ONLY {} REPLICA IDENTITY NOTHING;\n",
                    t.qname
                )),
                _ => {}
            }
            if !extra.is_empty() {
                let mut o = Obj::sql(
                    Key::part(class::CLASS, t.oid, Part::Extra),
                    Section::PostData,
                    prio::TABLE_EXTRA,
                    &t.schema,
                    &t.name,
                    format!("TABLE SETTINGS {}", t.qname),
                    extra,
                );
                o.deps.insert(key);
                new_objs.push(o);
            }
            if t.kind == 'm' && t.populated && !self.opts.schema_only {
                let mut o = Obj::sql(
                    Key::part(class::CLASS, t.oid, Part::Refresh),
                    Section::PostData,
                    prio::REFRESH_MATVIEW,
                    &t.schema,
                    &t.name,
                    format!("MATERIALIZED VIEW DATA {}", t.qname),
                    format!("REFRESH MATERIALIZED VIEW {};\n", t.qname),
                );
                o.deps.insert(key);
                new_objs.push(o);
            }
            if t.kind == 'r'
                && !self.opts.schema_only
                && self.opts.data_wanted(&t.schema, &t.name, t.persistence)
            {
                let names: Vec<&str> = cols
                    .iter()
                    .filter(|c| c.generated == '\0')
                    .map(|c| c.qname.as_str())
                    .collect();
                let o = Obj {
                    key: Key::part(class::CLASS, t.oid, Part::Data),
                    section: Section::Data,
                    prio: prio::TABLE_DATA,
                    schema: t.schema.clone(),
                    name: t.name.clone(),
                    label: format!("TABLE DATA {}", t.qname),
                    body: Body::TableData {
                        qname: t.qname.clone(),
                        columns: if names.is_empty() {
                            None
                        } else {
                            Some(names.join(", "))
                        },
                    },
                    deps: Default::default(),
                    acl: String::new(),
                };
                data_tables.push(t.qname.clone());
                new_objs.push(o);
            }
        }
        // Sequences.
        let seq_tables: HashMap<u32, &Table> = tables
            .iter()
            .filter(|t| t.kind == 'S')
            .map(|t| (t.oid, t))
            .collect();
        let values = self.sequence_values(&seqs)?;
        for s in &seqs {
            let key = Key::main(class::CLASS, s.oid);
            if !s.identity {
                let Some(t) = seq_tables.get(&s.oid) else {
                    continue;
                };
                let unlogged = if s.persistence == 'u' {
                    "UNLOGGED "
                } else {
                    ""
                };
                let mut sql = format!(
                    "CREATE {unlogged}SEQUENCE {}{};\n",
                    s.qname,
                    s.options(true)
                );
                sql.push_str(&self.owner(&format!("SEQUENCE {}", s.qname), &t.owner));
                sql.push_str(&self.comment(&format!("SEQUENCE {}", s.qname), t.comment.as_deref()));
                let mut o = Obj::sql(
                    key,
                    Section::PreData,
                    prio::TABLE,
                    &s.schema,
                    &s.name,
                    format!("SEQUENCE {}", s.qname),
                    sql,
                );
                o.acl = self.acl(&format!("SEQUENCE {}", s.qname), &t.owner, t.acl.as_deref());
                new_objs.push(o);
                if let Some((tbl, attnum)) = s.owner_table {
                    if let (Some(tt), Some(col)) = (
                        by_oid.get(&tbl),
                        columns
                            .get(&tbl)
                            .and_then(|c| c.iter().find(|x| x.attnum == attnum))
                            .map(|x| x.qname.clone()),
                    ) {
                        let sql = format!(
                            "ALTER SEQUENCE {} OWNED BY {}.{};\n",
                            s.qname, tt.qname, col
                        );
                        let mut o = Obj::sql(
                            Key::part(class::CLASS, s.oid, Part::OwnedBy),
                            Section::PreData,
                            prio::TABLE,
                            &s.schema,
                            &s.name,
                            format!("SEQUENCE OWNED BY {}", s.qname),
                            sql,
                        );
                        o.deps.insert(key);
                        o.deps.insert(Key::main(class::CLASS, tbl));
                        new_objs.push(o);
                    }
                }
            } else if let Some((tbl, _)) = s.owner_table {
                // An identity sequence is created with its table.
                self.aliases.add(class::CLASS, s.oid, class::CLASS, tbl);
            }
            if !self.opts.schema_only {
                if let Some((last, called)) = values.get(&s.oid) {
                    let sql = format!(
                        "SELECT pg_catalog.setval({}, {last}, {called});\n",
                        literal(&s.qname)
                    );
                    new_objs.push(Obj::sql(
                        Key::part(class::CLASS, s.oid, Part::Data),
                        Section::Data,
                        prio::SEQUENCE_SET,
                        &s.schema,
                        &s.name,
                        format!("SEQUENCE SET {}", s.qname),
                        sql,
                    ));
                }
            }
        }
        for o in new_objs {
            self.push(o);
        }
        Ok(data_tables)
    }

    fn sequence_values(&mut self, seqs: &[SeqInfo]) -> Result<HashMap<u32, (String, bool)>> {
        let mut out = HashMap::new();
        if self.opts.schema_only {
            return Ok(out);
        }
        for chunk in seqs.chunks(100) {
            let sql = chunk
                .iter()
                .map(|s| {
                    format!(
                        "SELECT {}::oid AS oid, last_value, is_called FROM {}",
                        s.oid, s.qname
                    )
                })
                .collect::<Vec<_>>()
                .join(" UNION ALL ");
            let what = format!(
                "reading sequence{} {}",
                if chunk.len() > 1 { "s" } else { "" },
                chunk
                    .iter()
                    .map(|s| s.qname.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            for r in self.q(&what, &sql)?.iter() {
                out.insert(r.oid("oid"), (r.string("last_value"), r.bool("is_called")));
            }
        }
        Ok(out)
    }

    fn create_table(
        &self,
        t: &Table,
        cols: &[Column],
        checks: &[Row<'_>],
        identity_of: &HashMap<(u32, i64), &SeqInfo>,
        by_oid: &HashMap<u32, &Table>,
    ) -> String {
        let unlogged = if t.persistence == 'u' {
            "UNLOGGED "
        } else {
            ""
        };
        let mut lines = Vec::new();
        for c in cols {
            if !(c.islocal || t.is_partition) {
                continue;
            }
            let mut l = format!("    {} {}", c.qname, c.typ);
            if let Some(co) = &c.collation {
                l.push_str(&format!(" COLLATE {co}"));
            }
            if c.generated == 's' {
                l.push_str(&format!(
                    " GENERATED ALWAYS AS ({}) STORED",
                    c.defexpr.clone().unwrap_or_default()
                ));
            }
            if c.identity == 'a' || c.identity == 'd' {
                let how = if c.identity == 'a' {
                    "ALWAYS"
                } else {
                    "BY DEFAULT"
                };
                match identity_of.get(&(t.oid, c.attnum)) {
                    Some(s) => l.push_str(&format!(
                        " GENERATED {how} AS IDENTITY (\n    SEQUENCE NAME {}{}\n    )",
                        s.qname,
                        s.options(false).replace("\n    ", "\n        ")
                    )),
                    None => l.push_str(&format!(" GENERATED {how} AS IDENTITY")),
                }
            }
            if c.notnull {
                l.push_str(" NOT NULL");
            }
            lines.push(l);
        }
        for ch in checks {
            if ch.bool("convalidated") && (ch.bool("conislocal") || t.is_partition) {
                lines.push(format!("    CONSTRAINT {} {}", ch.str("q"), ch.str("def")));
            }
        }
        let mut s = format!(
            "CREATE {unlogged}TABLE {} (\n{}\n)",
            t.qname,
            lines.join(",\n")
        );
        if !t.is_partition && !t.parents.is_empty() {
            let names: Vec<String> = t
                .parents
                .iter()
                .filter_map(|p| by_oid.get(p).map(|x| x.qname.clone()))
                .collect();
            s.push_str(&format!("\nINHERITS ({})", names.join(", ")));
        }
        if let Some(k) = &t.partkey {
            s.push_str(&format!("\nPARTITION BY {k}"));
        }
        if t.kind == 'r' {
            if let Some(am) = t.am.as_deref().filter(|a| *a != "heap") {
                s.push_str(&format!("\nUSING {am}"));
            }
        }
        let mut opts = reloptions(&t.reloptions, "");
        opts.extend(reloptions(&t.toastoptions, "toast."));
        if !opts.is_empty() {
            s.push_str(&format!("\nWITH ({})", opts.join(", ")));
        }
        s.push_str(";\n");
        s
    }

    fn indexes(&mut self, tables: &[Table]) -> Result<()> {
        let wanted: HashMap<u32, &Table> = tables.iter().map(|t| (t.oid, t)).collect();
        let rows = self.q(
            "listing indexes",
            "SELECT i.indexrelid, i.indrelid, format('%I.%I', n.nspname, ic.relname) AS q, n.nspname, ic.relname,
                    pg_get_indexdef(i.indexrelid) AS def, i.indisclustered, i.indisreplident,
                    co.oid AS conoid, co.contype, quote_ident(co.conname) AS conq, pg_get_constraintdef(co.oid) AS condef,
                    (SELECT inhparent FROM pg_inherits WHERE inhrelid = i.indexrelid) AS parentidx,
                    obj_description(i.indexrelid, 'pg_class') AS comment, obj_description(co.oid, 'pg_constraint') AS concomment,
                    (SELECT string_agg(a.attnum || ' ' || a.attstattarget, ',') FROM pg_attribute a
                      WHERE a.attrelid = i.indexrelid AND COALESCE(a.attstattarget, -1) >= 0) AS stats
             FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_namespace n ON n.oid = ic.relnamespace
             LEFT JOIN pg_constraint co ON co.conindid = i.indexrelid AND co.conrelid = i.indrelid AND co.contype IN ('p', 'u', 'x')
             ORDER BY i.indexrelid",
        )?;
        let qnames: HashMap<u32, String> = rows
            .iter()
            .map(|r| (r.oid("indexrelid"), r.string("q")))
            .collect();
        let mut new_objs = Vec::new();
        let mut aliases = Vec::new();
        for r in rows.iter() {
            let Some(t) = wanted.get(&r.oid("indrelid")) else {
                continue;
            };
            let idx = r.oid("indexrelid");
            let q = r.string("q");
            let table_key = Key::main(class::CLASS, t.oid);
            let (key, prio_, label, mut sql) = if r.opt("conoid").is_some() {
                let conoid = r.oid("conoid");
                aliases.push((idx, conoid));
                let label = format!("CONSTRAINT {} ON {}", r.str("conq"), t.qname);
                let mut s = format!(
                    "ALTER TABLE ONLY {} ADD CONSTRAINT {} {};\n",
                    t.qname,
                    r.str("conq"),
                    r.str("condef")
                );
                s.push_str(&self.comment(&label, r.opt("concomment")));
                (
                    Key::main(class::CONSTRAINT, conoid),
                    prio::CONSTRAINT,
                    label,
                    s,
                )
            } else {
                (
                    Key::main(class::CLASS, idx),
                    prio::INDEX,
                    format!("INDEX {q}"),
                    format!("{};\n", r.str("def")),
                )
            };
            if r.bool("indisclustered") {
                sql.push_str(&format!(
                    "ALTER TABLE {} CLUSTER ON {};\n",
                    t.qname,
                    quote_last(&q)
                ));
            }
            for st in r.str("stats").split(',').filter(|s| !s.is_empty()) {
                if let Some((num, target)) = st.split_once(' ') {
                    sql.push_str(&format!(
                        "ALTER INDEX {q} ALTER COLUMN {num} SET STATISTICS {target};\n"
                    ));
                }
            }
            sql.push_str(&self.comment(&format!("INDEX {q}"), r.opt("comment")));
            if r.bool("indisreplident") {
                sql.push_str(&format!(
                    "ALTER TABLE ONLY {} REPLICA IDENTITY USING INDEX {};\n",
                    t.qname,
                    quote_last(&q)
                ));
            }
            let mut o = Obj::sql(
                key,
                Section::PostData,
                prio_,
                &t.schema,
                r.str("relname"),
                label,
                sql,
            );
            o.deps.insert(table_key);
            new_objs.push(o);
            if r.opt("parentidx").is_some() {
                let parent = r.oid("parentidx");
                if let Some(pq) = qnames.get(&parent) {
                    let mut o = Obj::sql(
                        Key::part(class::CLASS, idx, Part::Attach),
                        Section::PostData,
                        prio::INDEX_ATTACH,
                        &t.schema,
                        r.str("relname"),
                        format!("INDEX ATTACH {q}"),
                        format!("ALTER INDEX {pq} ATTACH PARTITION {q};\n"),
                    );
                    o.deps.insert(key);
                    o.deps.insert(Key::main(class::CLASS, parent));
                    new_objs.push(o);
                }
            }
        }
        for (idx, con) in aliases {
            self.aliases.add(class::CLASS, idx, class::CONSTRAINT, con);
        }
        for o in new_objs {
            self.push(o);
        }
        Ok(())
    }

    fn foreign_keys(&mut self, tables: &[Table]) -> Result<()> {
        let wanted: HashMap<u32, &Table> = tables.iter().map(|t| (t.oid, t)).collect();
        let rows = self.q(
            "listing foreign keys",
            "SELECT co.oid, co.conrelid, quote_ident(co.conname) AS q, pg_get_constraintdef(co.oid) AS def,
                    obj_description(co.oid, 'pg_constraint') AS comment
             FROM pg_constraint co WHERE co.contype = 'f' AND co.conparentid = 0 ORDER BY co.oid",
        )?;
        let mut new_objs = Vec::new();
        for r in rows.iter() {
            let Some(t) = wanted.get(&r.oid("conrelid")) else {
                continue;
            };
            let only = if t.kind == 'p' { "" } else { "ONLY " };
            let label = format!("FK CONSTRAINT {} ON {}", r.str("q"), t.qname);
            let mut sql = format!(
                "ALTER TABLE {only}{} ADD CONSTRAINT {} {};\n",
                t.qname,
                r.str("q"),
                r.str("def")
            );
            sql.push_str(&self.comment(
                &format!("CONSTRAINT {} ON {}", r.str("q"), t.qname),
                r.opt("comment"),
            ));
            let mut o = Obj::sql(
                Key::main(class::CONSTRAINT, r.oid("oid")),
                Section::PostData,
                prio::FK_CONSTRAINT,
                &t.schema,
                r.str("q"),
                label,
                sql,
            );
            o.deps.insert(Key::main(class::CLASS, t.oid));
            new_objs.push(o);
        }
        for o in new_objs {
            self.push(o);
        }
        Ok(())
    }

    fn triggers(&mut self, tables: &[Table]) -> Result<()> {
        let wanted: HashMap<u32, &Table> = tables.iter().map(|t| (t.oid, t)).collect();
        let rows = self.q(
            "listing triggers",
            "SELECT tg.oid, tg.tgrelid, quote_ident(tg.tgname) AS q, tg.tgname, pg_get_triggerdef(tg.oid, false) AS def,
                    tg.tgenabled, obj_description(tg.oid, 'pg_trigger') AS comment
             FROM pg_trigger tg WHERE NOT tg.tgisinternal AND tg.tgparentid = 0 ORDER BY tg.oid",
        )?;
        let mut new_objs = Vec::new();
        for r in rows.iter() {
            let Some(t) = wanted.get(&r.oid("tgrelid")) else {
                continue;
            };
            let q = r.str("q");
            let mut sql = format!("{};\n", r.str("def"));
            match r.str("tgenabled") {
                "D" => sql.push_str(&format!("ALTER TABLE {} DISABLE TRIGGER {q};\n", t.qname)),
                "R" => sql.push_str(&format!(
                    "ALTER TABLE {} ENABLE REPLICA TRIGGER {q};\n",
                    t.qname
                )),
                "A" => sql.push_str(&format!(
                    "ALTER TABLE {} ENABLE ALWAYS TRIGGER {q};\n",
                    t.qname
                )),
                _ => {}
            }
            sql.push_str(&self.comment(&format!("TRIGGER {q} ON {}", t.qname), r.opt("comment")));
            let mut o = Obj::sql(
                Key::main(class::TRIGGER, r.oid("oid")),
                Section::PostData,
                prio::TRIGGER,
                &t.schema,
                &format!("{} {}", t.name, r.str("tgname")),
                format!("TRIGGER {q} ON {}", t.qname),
                sql,
            );
            o.deps.insert(Key::main(class::CLASS, t.oid));
            new_objs.push(o);
        }
        for o in new_objs {
            self.push(o);
        }
        Ok(())
    }

    fn rules(&mut self, tables: &[Table]) -> Result<()> {
        let wanted: HashMap<u32, &Table> = tables.iter().map(|t| (t.oid, t)).collect();
        let rows = self.q(
            "listing rules",
            "SELECT r.oid, r.ev_class, r.rulename, quote_ident(r.rulename) AS q, pg_get_ruledef(r.oid) AS def, r.ev_enabled,
                    obj_description(r.oid, 'pg_rewrite') AS comment
             FROM pg_rewrite r ORDER BY r.oid",
        )?;
        let mut new_objs = Vec::new();
        let mut aliases = Vec::new();
        for r in rows.iter() {
            let rel = r.oid("ev_class");
            if r.str("rulename") == "_RETURN" {
                aliases.push((r.oid("oid"), rel));
                continue;
            }
            let Some(t) = wanted.get(&rel) else { continue };
            let q = r.str("q");
            let mut sql = format!("{}\n", r.str("def").trim_end());
            if r.str("ev_enabled") == "D" {
                sql.push_str(&format!("ALTER TABLE {} DISABLE RULE {q};\n", t.qname));
            }
            sql.push_str(&self.comment(&format!("RULE {q} ON {}", t.qname), r.opt("comment")));
            let mut o = Obj::sql(
                Key::main(class::REWRITE, r.oid("oid")),
                Section::PostData,
                prio::RULE,
                &t.schema,
                &format!("{} {}", t.name, r.str("rulename")),
                format!("RULE {q} ON {}", t.qname),
                sql,
            );
            o.deps.insert(Key::main(class::CLASS, t.oid));
            new_objs.push(o);
        }
        for (rule, rel) in aliases {
            self.aliases.add(class::REWRITE, rule, class::CLASS, rel);
        }
        for o in new_objs {
            self.push(o);
        }
        Ok(())
    }

    fn policies(&mut self, tables: &[Table]) -> Result<()> {
        let wanted: HashMap<u32, &Table> = tables.iter().map(|t| (t.oid, t)).collect();
        let rows = self.q(
            "listing policies",
            "SELECT p.oid, p.polrelid, p.polname, quote_ident(p.polname) AS q, p.polcmd, p.polpermissive,
                    array_to_string(ARRAY(SELECT CASE WHEN r = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r)) END
                                          FROM unnest(p.polroles) AS r), ', ') AS roles,
                    pg_get_expr(p.polqual, p.polrelid) AS qual, pg_get_expr(p.polwithcheck, p.polrelid) AS withcheck,
                    obj_description(p.oid, 'pg_policy') AS comment
             FROM pg_policy p ORDER BY p.oid",
        )?;
        let mut new_objs = Vec::new();
        for r in rows.iter() {
            let Some(t) = wanted.get(&r.oid("polrelid")) else {
                continue;
            };
            let q = r.str("q");
            let mut sql = format!("CREATE POLICY {q} ON {}", t.qname);
            if !r.bool("polpermissive") {
                sql.push_str(" AS RESTRICTIVE");
            }
            let cmd = match r.str("polcmd") {
                "r" => "SELECT",
                "a" => "INSERT",
                "w" => "UPDATE",
                "d" => "DELETE",
                _ => "ALL",
            };
            sql.push_str(&format!(" FOR {cmd}"));
            if !r.str("roles").is_empty() {
                sql.push_str(&format!(" TO {}", r.str("roles")));
            }
            if let Some(e) = r.opt("qual") {
                sql.push_str(&format!(" USING ({e})"));
            }
            if let Some(e) = r.opt("withcheck") {
                sql.push_str(&format!(" WITH CHECK ({e})"));
            }
            sql.push_str(";\n");
            sql.push_str(&self.comment(&format!("POLICY {q} ON {}", t.qname), r.opt("comment")));
            let mut o = Obj::sql(
                Key::main(class::POLICY, r.oid("oid")),
                Section::PostData,
                prio::POLICY,
                &t.schema,
                &format!("{} {}", t.name, r.str("polname")),
                format!("POLICY {q} ON {}", t.qname),
                sql,
            );
            o.deps.insert(Key::main(class::CLASS, t.oid));
            new_objs.push(o);
        }
        for o in new_objs {
            self.push(o);
        }
        Ok(())
    }

    /// `ALTER DEFAULT PRIVILEGES`, last: they must not touch the objects the script creates.
    fn default_acls(&mut self) -> Result<()> {
        if self.opts.no_privileges || self.opts.data_only {
            return Ok(());
        }
        let rows = self.q(
            "listing default privileges",
            "SELECT d.oid, pg_get_userbyid(d.defaclrole) AS role, n.nspname, d.defaclobjtype::text AS kind,
                    d.defaclacl::text AS acl
             FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace ORDER BY 2, 3, 4",
        )?;
        let mut new_objs = Vec::new();
        for r in rows.iter() {
            let schema = r.opt("nspname").map(str::to_string);
            if let Some(s) = &schema {
                if !self.schema_wanted(s) {
                    continue;
                }
            }
            let kind = match r.str("kind") {
                "r" => "TABLES",
                "S" => "SEQUENCES",
                "f" => "FUNCTIONS",
                "T" => "TYPES",
                "n" => "SCHEMAS",
                other => {
                    return Err(Error::Unsupported(format!(
                        "default privileges of role {} for object type {other:?}",
                        r.str("role")
                    )))
                }
            };
            let role = r.string("role");
            let mut prefix = format!(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {}",
                crate::sql::ident(&role)
            );
            if let Some(s) = &schema {
                prefix.push_str(&format!(" IN SCHEMA {}", crate::sql::ident(s)));
            }
            let mut sql = String::new();
            for line in acl::statements(kind, &role, r.str("acl"), None).lines() {
                // A schema's default privileges start empty: only its GRANTs matter.
                if line.starts_with("GRANT ") || (schema.is_none() && line.starts_with("REVOKE ")) {
                    sql.push_str(&format!("{prefix} {line}\n"));
                }
            }
            let label = format!("DEFAULT PRIVILEGES FOR {kind} OF ROLE {role}");
            new_objs.push(Obj::sql(
                Key::main(826, r.oid("oid")),
                Section::PostData,
                prio::DEFAULT_ACL,
                schema.as_deref().unwrap_or(""),
                &format!("{role} {kind}"),
                label,
                sql,
            ));
        }
        for o in new_objs {
            self.push(o);
        }
        Ok(())
    }

    fn statistics(&mut self) -> Result<()> {
        let rows = self.q(
            "listing statistics objects",
            &format!(
                "SELECT s.oid, s.stxname, n.nspname, format('%I.%I', n.nspname, s.stxname) AS q, pg_get_statisticsobjdef(s.oid) AS def,
                        COALESCE(s.stxstattarget, -1) AS target, pg_get_userbyid(s.stxowner) AS owner,
                        obj_description(s.oid, 'pg_statistic_ext') AS comment
                 FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace WHERE {USER_NS} AND {}",
                not_member("pg_statistic_ext", "s.oid")
            ),
        )?;
        let mut new_objs = Vec::new();
        for r in rows.iter() {
            let schema = r.string("nspname");
            if !self.schema_wanted(&schema) {
                continue;
            }
            let q = r.str("q");
            let mut sql = format!("{};\n", r.str("def"));
            if r.i64("target") >= 0 {
                sql.push_str(&format!(
                    "ALTER STATISTICS {q} SET STATISTICS {};\n",
                    r.str("target")
                ));
            }
            sql.push_str(&self.owner(&format!("STATISTICS {q}"), r.str("owner")));
            sql.push_str(&self.comment(&format!("STATISTICS {q}"), r.opt("comment")));
            new_objs.push(Obj::sql(
                Key::main(class::STATISTIC_EXT, r.oid("oid")),
                Section::PostData,
                prio::STATSEXT,
                &schema,
                r.str("stxname"),
                format!("STATISTICS {q}"),
                sql,
            ));
        }
        for o in new_objs {
            self.push(o);
        }
        Ok(())
    }

    fn large_objects(&mut self) -> Result<()> {
        if !self.opts.large_objects {
            return Ok(());
        }
        let rows = self.q(
            "listing large objects",
            "SELECT m.oid, pg_get_userbyid(m.lomowner) AS owner, m.lomacl::text AS acl,
                    obj_description(m.oid, 'pg_largeobject') AS comment
             FROM pg_largeobject_metadata m ORDER BY m.oid",
        )?;
        let mut new_objs = Vec::new();
        for r in rows.iter() {
            let oid = r.oid("oid");
            let owner = r.string("owner");
            let mut sql = format!("SELECT pg_catalog.lo_create('{oid}');\n");
            sql.push_str(&self.owner(&format!("LARGE OBJECT {oid}"), &owner));
            sql.push_str(&self.comment(&format!("LARGE OBJECT {oid}"), r.opt("comment")));
            let mut o = Obj::sql(
                Key::main(class::LARGEOBJECT, oid),
                Section::PreData,
                prio::BLOB,
                "",
                &format!("{oid:010}"),
                format!("LARGE OBJECT {oid}"),
                sql,
            );
            o.acl = self.acl(&format!("LARGE OBJECT {oid}"), &owner, r.opt("acl"));
            new_objs.push(o);
            if !self.opts.schema_only {
                new_objs.push(Obj {
                    key: Key::part(class::LARGEOBJECT, oid, Part::Data),
                    section: Section::Data,
                    prio: prio::BLOB_DATA,
                    schema: String::new(),
                    name: format!("{oid:010}"),
                    label: format!("LARGE OBJECT DATA {oid}"),
                    body: Body::BlobData { oid },
                    deps: Default::default(),
                    acl: String::new(),
                });
            }
        }
        for o in new_objs {
            self.push(o);
        }
        Ok(())
    }

    /// Adds the dependencies `pg_depend` records between dumped objects.
    fn dependencies(&mut self) -> Result<()> {
        let rows = self.q(
            "reading dependencies",
            "SELECT classid, objid, refclassid, refobjid FROM pg_depend
             WHERE deptype IN ('n', 'a') AND objid >= 16384 AND refobjid >= 16384",
        )?;
        let keys: HashSet<Key> = self.objs.iter().map(|o| o.key).collect();
        let index: HashMap<Key, usize> = self
            .objs
            .iter()
            .enumerate()
            .map(|(i, o)| (o.key, i))
            .collect();
        for r in rows.iter() {
            let from = self
                .aliases
                .resolve(&keys, r.oid("classid"), r.oid("objid"));
            let to = self
                .aliases
                .resolve(&keys, r.oid("refclassid"), r.oid("refobjid"));
            if let (Some(f), Some(t)) = (from, to) {
                if f != t {
                    let i = index[&f];
                    self.objs[i].deps.insert(t);
                }
            }
        }
        Ok(())
    }

    /// A materialized view is refreshed after the materialized views it reads (directly or
    /// through views).
    fn refresh_order(&mut self) {
        let index: HashMap<Key, usize> = self
            .objs
            .iter()
            .enumerate()
            .map(|(i, o)| (o.key, i))
            .collect();
        let refreshes: Vec<(usize, u32)> = self
            .objs
            .iter()
            .enumerate()
            .filter(|(_, o)| o.key.part == Part::Refresh)
            .map(|(i, o)| (i, o.key.oid))
            .collect();
        for (ri, mv) in refreshes {
            let mut stack = vec![Key::main(class::CLASS, mv)];
            let mut seen = HashSet::new();
            while let Some(k) = stack.pop() {
                if !seen.insert(k) {
                    continue;
                }
                let Some(&i) = index.get(&k) else { continue };
                for d in self.objs[i].deps.clone() {
                    let refresh = Key::part(d.class, d.oid, Part::Refresh);
                    if d.oid != mv && index.contains_key(&refresh) {
                        self.objs[ri].deps.insert(refresh);
                    }
                    stack.push(d);
                }
            }
        }
    }
}

/// The last component of a qualified name (`s.t` → `t`), for commands that take an unqualified
/// index name.
fn quote_last(q: &str) -> String {
    // Names come from format('%I.%I'); a quoted schema may contain dots, so split at the last
    // dot outside quotes.
    let mut in_quotes = false;
    let mut last = 0;
    for (i, ch) in q.char_indices() {
        match ch {
            '"' => in_quotes = !in_quotes,
            '.' if !in_quotes => last = i + 1,
            _ => {}
        }
    }
    q[last..].to_string()
}
