//! Cluster-wide objects, as `pg_dumpall --globals-only` writes them: roles (attributes,
//! passwords, comments, settings) and role memberships; and the database-level parts of each
//! database's script (`CREATE DATABASE`, owner, comment, settings, privileges), as
//! `pg_dump --create` writes them.

use crate::client::Client;
use crate::conn::PgStream;
use crate::dump::acl;
use crate::error::Result;
use crate::sql::{ident, literal};

/// One database of the server.
#[derive(Debug, Clone)]
pub struct Database {
    /// OID.
    pub oid: u32,
    /// Name.
    pub name: String,
    /// Owner name.
    pub owner: String,
    /// Encoding name.
    pub encoding: String,
    /// LC_COLLATE.
    pub collate: String,
    /// LC_CTYPE.
    pub ctype: String,
    /// Locale provider (`c` libc, `i` icu, `b` builtin).
    pub provider: char,
    /// ICU (or builtin) locale, if any.
    pub locale: Option<String>,
    /// ICU rules (16+), if any.
    pub icu_rules: Option<String>,
    /// Connection limit (-1 = none).
    pub connlimit: i64,
    /// Whether it is a template.
    pub is_template: bool,
    /// Whether connections are allowed.
    pub allow_conn: bool,
    /// ACL text, if set.
    pub acl: Option<String>,
    /// Comment.
    pub comment: Option<String>,
}

impl Database {
    /// Whether every server has this database already (it is connected to, not created).
    pub fn is_preexisting(&self) -> bool {
        self.name == "postgres" || self.name == "template1"
    }
}

/// Lists the server's databases (template0 left out).
pub fn databases<S: PgStream>(c: &mut Client<S>, version: u32) -> Result<Vec<Database>> {
    let (provider, locale, rules) = if version >= 170000 {
        ("d.datlocprovider", "d.datlocale", "d.daticurules")
    } else if version >= 160000 {
        ("d.datlocprovider", "d.daticulocale", "d.daticurules")
    } else if version >= 150000 {
        ("d.datlocprovider", "d.daticulocale", "NULL")
    } else {
        ("'c'", "NULL", "NULL")
    };
    let sql = format!(
        "SELECT d.oid, d.datname, pg_get_userbyid(d.datdba) AS owner, pg_encoding_to_char(d.encoding) AS encoding,
                d.datcollate, d.datctype, {provider} AS provider, {locale} AS locale, {rules} AS rules,
                d.datconnlimit, d.datistemplate, d.datallowconn, d.datacl::text AS acl,
                shobj_description(d.oid, 'pg_database') AS comment
         FROM pg_database d WHERE d.datname <> 'template0' ORDER BY d.datname"
    );
    let rows = c.query("listing databases", &sql)?;
    Ok(rows
        .iter()
        .map(|r| Database {
            oid: r.oid("oid"),
            name: r.string("datname"),
            owner: r.string("owner"),
            encoding: r.string("encoding"),
            collate: r.string("datcollate"),
            ctype: r.string("datctype"),
            provider: r.str("provider").chars().next().unwrap_or('c'),
            locale: r.opt("locale").map(str::to_string),
            icu_rules: r.opt("rules").map(str::to_string),
            connlimit: r.i64("datconnlimit"),
            is_template: r.bool("datistemplate"),
            allow_conn: r.bool("datallowconn"),
            acl: r.opt("acl").map(str::to_string),
            comment: r.opt("comment").map(str::to_string),
        })
        .collect())
}

/// A psql `\connect` line for `db`.
pub fn connect_line(db: &str) -> String {
    if !db.is_empty()
        && db
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        format!("\\connect {db}\n")
    } else {
        let mut val = String::from("'");
        for c in db.chars() {
            if c == '\'' || c == '\\' {
                val.push('\\');
            }
            val.push(c);
        }
        val.push('\'');
        format!(
            "\\connect -reuse-previous=on {}\n",
            ident(&format!("dbname={val}"))
        )
    }
}

/// What goes before a database's objects: `CREATE DATABASE` (unless it exists on every
/// server), its owner, and `\connect`.
pub fn prologue(db: &Database, create: bool, clean: bool, no_owner: bool) -> String {
    let q = ident(&db.name);
    let mut s = String::new();
    if create && !db.is_preexisting() {
        if clean {
            s.push_str(&format!("DROP DATABASE IF EXISTS {q};\n"));
        }
        s.push_str(&format!(
            "CREATE DATABASE {q} WITH TEMPLATE = template0 ENCODING = {}",
            literal(&db.encoding)
        ));
        match db.provider {
            'i' => s.push_str(" LOCALE_PROVIDER = icu"),
            'b' => s.push_str(" LOCALE_PROVIDER = builtin"),
            _ => s.push_str(" LOCALE_PROVIDER = libc"),
        }
        if db.collate == db.ctype {
            s.push_str(&format!(" LOCALE = {}", literal(&db.collate)));
        } else {
            s.push_str(&format!(
                " LC_COLLATE = {} LC_CTYPE = {}",
                literal(&db.collate),
                literal(&db.ctype)
            ));
        }
        if let Some(l) = &db.locale {
            if db.provider == 'i' {
                s.push_str(&format!(" ICU_LOCALE = {}", literal(l)));
            } else if db.provider == 'b' {
                s.push_str(&format!(" BUILTIN_LOCALE = {}", literal(l)));
            }
        }
        if let Some(r) = &db.icu_rules {
            s.push_str(&format!(" ICU_RULES = {}", literal(r)));
        }
        s.push_str(";\n");
        if !no_owner {
            s.push_str(&format!(
                "ALTER DATABASE {q} OWNER TO {};\n",
                ident(&db.owner)
            ));
        }
    }
    if create {
        s.push('\n');
        s.push_str(&connect_line(&db.name));
        s.push('\n');
    }
    s
}

/// What goes after a database's objects: its comment, connection limit, template flag,
/// settings (`ALTER DATABASE … SET`, `ALTER ROLE … IN DATABASE … SET`) and privileges.
pub fn epilogue<S: PgStream>(
    c: &mut Client<S>,
    db: &Database,
    no_owner: bool,
    no_privileges: bool,
    no_comments: bool,
) -> Result<String> {
    let q = ident(&db.name);
    let mut s = String::from("--\n-- Database settings\n--\n\n");
    if db.is_preexisting() && !no_owner {
        s.push_str(&format!(
            "ALTER DATABASE {q} OWNER TO {};\n",
            ident(&db.owner)
        ));
    }
    if let (Some(t), false) = (&db.comment, no_comments) {
        s.push_str(&format!("COMMENT ON DATABASE {q} IS {};\n", literal(t)));
    }
    if db.connlimit != -1 {
        s.push_str(&format!(
            "ALTER DATABASE {q} WITH CONNECTION LIMIT = {};\n",
            db.connlimit
        ));
    }
    if db.is_template && !db.is_preexisting() {
        s.push_str(&format!("ALTER DATABASE {q} IS_TEMPLATE = true;\n"));
    }
    let rows = c.query(
        "reading database settings",
        &format!(
            "SELECT s.setrole, CASE WHEN s.setrole <> 0 THEN pg_get_userbyid(s.setrole) END AS role, u.cfg
             FROM pg_db_role_setting s, unnest(s.setconfig) WITH ORDINALITY AS u(cfg, n)
             WHERE s.setdatabase = {} ORDER BY s.setrole, u.n",
            db.oid
        ),
    )?;
    for r in rows.iter() {
        let set = set_clause(r.str("cfg"));
        match r.opt("role") {
            Some(role) => s.push_str(&format!(
                "ALTER ROLE {} IN DATABASE {q} {set};\n",
                ident(role)
            )),
            None => s.push_str(&format!("ALTER DATABASE {q} {set};\n")),
        }
    }
    if let (Some(a), false) = (&db.acl, no_privileges) {
        s.push_str(&acl::statements(
            &format!("DATABASE {q}"),
            &db.owner,
            a,
            None,
        ));
    }
    s.push('\n');
    Ok(s)
}

/// `SET name TO value` for a `name=value` setting as the catalog stores it. List-valued
/// settings (`search_path` and the like) are stored already quoted and are written as is.
pub fn set_clause(cfg: &str) -> String {
    let (name, value) = cfg.split_once('=').unwrap_or((cfg, ""));
    let list = matches!(
        name,
        "search_path"
            | "temp_tablespaces"
            | "session_preload_libraries"
            | "shared_preload_libraries"
            | "local_preload_libraries"
            | "unix_socket_directories"
    );
    if list {
        format!("SET {name} TO {value}")
    } else {
        format!("SET {name} TO {}", literal(value))
    }
}

/// The globals script: roles, their passwords (unless `no_passwords` or not readable),
/// comments, settings and memberships.
pub fn globals_script<S: PgStream>(
    c: &mut Client<S>,
    version: u32,
    no_passwords: bool,
    no_comments: bool,
    warnings: &mut Vec<String>,
) -> Result<String> {
    let superuser = c
        .query(
            "checking privileges",
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
        )?
        .first()
        .map(|r| r.bool("rolsuper"))
        .unwrap_or(false);
    let source = if superuser { "pg_authid" } else { "pg_roles" };
    if !superuser && !no_passwords {
        warnings
            .push("role passwords are not dumped: reading pg_authid needs a superuser".to_string());
    }
    let sql = format!(
        "SELECT a.oid, a.rolname, a.rolsuper, a.rolinherit, a.rolcreaterole, a.rolcreatedb, a.rolcanlogin,
                a.rolreplication, a.rolbypassrls, a.rolconnlimit, {pw} AS rolpassword, a.rolvaliduntil,
                shobj_description(a.oid, 'pg_authid') AS comment
         FROM {source} a WHERE a.rolname !~ '^pg_' ORDER BY a.rolname",
        pw = if superuser { "a.rolpassword" } else { "NULL::text" }
    );
    let roles = c.query("listing roles", &sql)?;
    let mut s = String::from(
        "--\n-- PostgreSQL database cluster dump (globals) by kstash postgres-addon\n--\n\n",
    );
    s.push_str("SET default_transaction_read_only = off;\n\nSET client_encoding = 'UTF8';\nSET standard_conforming_strings = on;\n\n");
    s.push_str("--\n-- Roles\n--\n\n");
    for r in roles.iter() {
        let q = ident(r.str("rolname"));
        // CREATE ROLE fails for a role that exists (e.g. the restoring superuser); the DO block
        // keeps a psql -v ON_ERROR_STOP=1 run going, and ALTER ROLE then sets every attribute.
        s.push_str(&format!(
            "DO $kstash$ BEGIN CREATE ROLE {q}; EXCEPTION WHEN duplicate_object THEN NULL; END $kstash$;\n"
        ));
        let flag =
            |on: bool, yes: &str, no: &str| if on { yes.to_string() } else { no.to_string() };
        let mut attrs = vec![
            flag(r.bool("rolsuper"), "SUPERUSER", "NOSUPERUSER"),
            flag(r.bool("rolinherit"), "INHERIT", "NOINHERIT"),
            flag(r.bool("rolcreaterole"), "CREATEROLE", "NOCREATEROLE"),
            flag(r.bool("rolcreatedb"), "CREATEDB", "NOCREATEDB"),
            flag(r.bool("rolcanlogin"), "LOGIN", "NOLOGIN"),
            flag(r.bool("rolreplication"), "REPLICATION", "NOREPLICATION"),
            flag(r.bool("rolbypassrls"), "BYPASSRLS", "NOBYPASSRLS"),
        ];
        if r.i64("rolconnlimit") != -1 {
            attrs.push(format!("CONNECTION LIMIT {}", r.str("rolconnlimit")));
        }
        if let Some(v) = r.opt("rolvaliduntil") {
            attrs.push(format!("VALID UNTIL {}", literal(v)));
        }
        s.push_str(&format!("ALTER ROLE {q} WITH {};\n", attrs.join(" ")));
        if let (Some(pw), false) = (r.opt("rolpassword"), no_passwords) {
            s.push_str(&format!("ALTER ROLE {q} WITH PASSWORD {};\n", literal(pw)));
        }
        if let (Some(t), false) = (r.opt("comment"), no_comments) {
            s.push_str(&format!("COMMENT ON ROLE {q} IS {};\n", literal(t)));
        }
    }
    // Settings that apply in every database.
    let rows = c.query(
        "reading role settings",
        "SELECT pg_get_userbyid(s.setrole) AS role, u.cfg
         FROM pg_db_role_setting s, unnest(s.setconfig) WITH ORDINALITY AS u(cfg, n)
         WHERE s.setdatabase = 0 AND s.setrole <> 0 ORDER BY 1, u.n",
    )?;
    if !rows.is_empty() {
        s.push_str("\n--\n-- Role settings\n--\n\n");
        for r in rows.iter() {
            s.push_str(&format!(
                "ALTER ROLE {} {};\n",
                ident(r.str("role")),
                set_clause(r.str("cfg"))
            ));
        }
    }
    // Memberships.
    let (inherit, set) = if version >= 160000 {
        ("m.inherit_option", "m.set_option")
    } else {
        ("NULL::bool", "NULL::bool")
    };
    let rows = c.query(
        "reading role memberships",
        &format!(
            "SELECT pg_get_userbyid(m.roleid) AS role, pg_get_userbyid(m.member) AS member,
                    CASE WHEN m.grantor <> 0 THEN pg_get_userbyid(m.grantor) END AS grantor, m.admin_option,
                    {inherit} AS inherit_option, {set} AS set_option
             FROM pg_auth_members m
             WHERE pg_get_userbyid(m.roleid) !~ '^pg_' OR pg_get_userbyid(m.member) !~ '^pg_'
             ORDER BY 1, 2, 3"
        ),
    )?;
    if !rows.is_empty() {
        s.push_str("\n--\n-- Role memberships\n--\n\n");
        for r in rows.iter() {
            let mut opts = Vec::new();
            if r.bool("admin_option") {
                opts.push("ADMIN OPTION".to_string());
            }
            if let Some(i) = r.opt("inherit_option") {
                opts.push(format!(
                    "INHERIT {}",
                    if i == "t" { "TRUE" } else { "FALSE" }
                ));
            }
            if let Some(x) = r.opt("set_option") {
                opts.push(format!("SET {}", if x == "t" { "TRUE" } else { "FALSE" }));
            }
            let with = if opts.is_empty() {
                String::new()
            } else {
                format!(" WITH {}", opts.join(", "))
            };
            let by = r
                .opt("grantor")
                .map(|g| format!(" GRANTED BY {}", ident(g)))
                .unwrap_or_default();
            s.push_str(&format!(
                "GRANT {} TO {}{with}{by};\n",
                ident(r.str("role")),
                ident(r.str("member"))
            ));
        }
    }
    s.push_str("\n--\n-- PostgreSQL database cluster dump (globals) complete\n--\n");
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_lines_quote_odd_names() {
        assert_eq!(connect_line("app"), "\\connect app\n");
        assert_eq!(
            connect_line("We'ird"),
            "\\connect -reuse-previous=on \"dbname='We\\'ird'\"\n"
        );
        assert_eq!(
            crate::script::connect_target("-reuse-previous=on \"dbname='We\\'ird'\"").as_deref(),
            Some("We'ird")
        );
    }

    #[test]
    fn settings() {
        assert_eq!(set_clause("work_mem=64MB"), "SET work_mem TO '64MB'");
        assert_eq!(
            set_clause("search_path=\"$user\", public"),
            "SET search_path TO \"$user\", public"
        );
    }
}
