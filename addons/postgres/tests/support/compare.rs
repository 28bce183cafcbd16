//! What a test compares two servers by: the schema as `pg_dump --schema-only` prints it, every
//! table's rows as checksums, and the cluster's globals. Shared by the addon's host tests and
//! `engine/cli/tests/addon_postgres.rs` (which includes it by path, beside `server.rs`).

use super::server::Server;

/// `pg_dump --schema-only` of `db`, without the random `\restrict`/`\unrestrict` key lines.
pub fn schema_of(server: &Server, db: &str) -> String {
    let out = server
        .cmd("pg_dump")
        .args(["--schema-only", "-d", db])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("\\restrict ") && !l.starts_with("\\unrestrict "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every table's rows (of every user schema, partitions and inheritance children separately),
/// each as an md5 of its sorted text rows, plus sequence values and large objects.
pub fn data_of(server: &Server, db: &str) -> String {
    let tables = server.psql(
        db,
        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_' ORDER BY 1",
    );
    let mut out = String::new();
    for t in tables.lines() {
        let sum = server.psql(
            db,
            &format!("SELECT count(*) || ' ' || coalesce(md5(string_agg(x::text, E'\\n' ORDER BY x::text)), '-') FROM ONLY {t} x"),
        );
        out.push_str(&format!("{t} {sum}"));
    }
    out.push_str(&server.psql(
        db,
        "SELECT string_agg(format('%I.%I', schemaname, sequencename) || '=' || coalesce(last_value::text, 'null'), ',' ORDER BY schemaname, sequencename) FROM pg_sequences",
    ));
    out.push_str(&server.psql(
        db,
        "SELECT count(*) || ' ' || coalesce(md5(string_agg(md5(lo_get(oid)), ',' ORDER BY oid)), '-') FROM pg_largeobject_metadata",
    ));
    out
}

/// Roles (without the superuser), memberships and database settings.
pub fn globals_of(server: &Server) -> String {
    server.psql(
        "postgres",
        "SELECT string_agg(rolname || ':' || rolcanlogin || rolcreatedb || coalesce(rolpassword, '-'), ',' ORDER BY rolname) FROM pg_authid WHERE rolname !~ '^pg_' AND rolname <> 'postgres' \
         UNION ALL SELECT string_agg(pg_get_userbyid(roleid) || '>' || pg_get_userbyid(member), ',' ORDER BY pg_get_userbyid(roleid), pg_get_userbyid(member)) FROM pg_auth_members WHERE pg_get_userbyid(roleid) !~ '^pg_' \
         UNION ALL SELECT string_agg(d.datname || coalesce(array_to_string(s.setconfig, ';'), ''), ',' ORDER BY d.datname) FROM pg_database d LEFT JOIN pg_db_role_setting s ON s.setdatabase = d.oid",
    )
}
