//! The dumpable objects of one database and their order: pg_dump's sections (pre-data, data,
//! post-data), its priority per object kind, and the dependencies the server records in
//! `pg_depend`, resolved by a stable topological sort.

use crate::error::{Error, Result};
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};

/// System catalog OIDs used as object classes (stable across versions).
pub mod class {
    /// pg_class.
    pub const CLASS: u32 = 1259;
    /// pg_type.
    pub const TYPE: u32 = 1247;
    /// pg_proc.
    pub const PROC: u32 = 1255;
    /// pg_namespace.
    pub const NAMESPACE: u32 = 2615;
    /// pg_constraint.
    pub const CONSTRAINT: u32 = 2606;
    /// pg_attrdef.
    pub const ATTRDEF: u32 = 2604;
    /// pg_rewrite.
    pub const REWRITE: u32 = 2618;
    /// pg_trigger.
    pub const TRIGGER: u32 = 2620;
    /// pg_policy.
    pub const POLICY: u32 = 3256;
    /// pg_extension.
    pub const EXTENSION: u32 = 3079;
    /// pg_statistic_ext.
    pub const STATISTIC_EXT: u32 = 3381;
    /// pg_largeobject (large objects' class in pg_depend/pg_description).
    pub const LARGEOBJECT: u32 = 2613;
}

/// Which part of an object a [`Key`] names, when one catalog row yields several statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Part {
    /// The object itself.
    Main,
    /// `ALTER SEQUENCE … OWNED BY` of a sequence.
    OwnedBy,
    /// `ATTACH PARTITION` of a partition (table or index).
    Attach,
    /// `REFRESH MATERIALIZED VIEW`.
    Refresh,
    /// A table's data, a sequence's value or a large object's contents.
    Data,
    /// Table-level settings that must follow other objects (replica identity, cluster).
    Extra,
}

/// Identifies a dump object: a catalog row plus the part of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// Catalog OID of the object's class (see [`class`]).
    pub class: u32,
    /// The object's OID in that catalog.
    pub oid: u32,
    /// Which part.
    pub part: Part,
}

impl Key {
    /// The main part of (`class`, `oid`).
    pub fn main(class: u32, oid: u32) -> Key {
        Key {
            class,
            oid,
            part: Part::Main,
        }
    }

    /// Another part of (`class`, `oid`).
    pub fn part(class: u32, oid: u32, part: Part) -> Key {
        Key { class, oid, part }
    }
}

/// pg_dump's sections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Section {
    /// Everything needed before data is loaded.
    PreData,
    /// Table contents, sequence values, large object contents.
    Data,
    /// Indexes, constraints, triggers, rules, policies, refreshes.
    PostData,
}

/// pg_dump's priorities per object kind (lower sorts first when dependencies allow).
#[allow(missing_docs)]
pub mod prio {
    pub const NAMESPACE: u8 = 1;
    pub const EXTENSION: u8 = 5;
    pub const TYPE: u8 = 6;
    pub const FUNC: u8 = 8;
    pub const AGG: u8 = 9;
    pub const TABLE: u8 = 20;
    pub const TABLE_ATTACH: u8 = 21;
    pub const ATTRDEF: u8 = 23;
    pub const BLOB: u8 = 24;
    pub const TABLE_DATA: u8 = 26;
    pub const SEQUENCE_SET: u8 = 27;
    pub const BLOB_DATA: u8 = 28;
    pub const CONSTRAINT: u8 = 30;
    pub const INDEX: u8 = 31;
    pub const INDEX_ATTACH: u8 = 32;
    pub const STATSEXT: u8 = 33;
    pub const RULE: u8 = 34;
    pub const TRIGGER: u8 = 35;
    pub const FK_CONSTRAINT: u8 = 36;
    pub const POLICY: u8 = 37;
    pub const TABLE_EXTRA: u8 = 38;
    pub const REFRESH_MATVIEW: u8 = 45;
    pub const DEFAULT_ACL: u8 = 50;
}

/// What an object contributes to the script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Ready SQL (statements terminated by `;` and a newline).
    Sql(String),
    /// A table's rows: `COPY qname (columns) FROM stdin;` + data, read at write time.
    TableData {
        /// Qualified, quoted table name.
        qname: String,
        /// Quoted column list (generated columns left out); `None` for a table without
        /// columns.
        columns: Option<String>,
    },
    /// A large object's contents, read at write time.
    BlobData {
        /// The large object's OID.
        oid: u32,
    },
}

/// One entry of the dump.
#[derive(Debug, Clone)]
pub struct Obj {
    /// Identity.
    pub key: Key,
    /// Section.
    pub section: Section,
    /// Kind priority (see [`prio`]).
    pub prio: u8,
    /// Schema name for sorting ('' for none).
    pub schema: String,
    /// Object name for sorting.
    pub name: String,
    /// Header line, e.g. `TABLE public.t`.
    pub label: String,
    /// What to write.
    pub body: Body,
    /// Objects this one needs first.
    pub deps: BTreeSet<Key>,
    /// Privilege statements, written after post-data (as pg_dump does).
    pub acl: String,
}

impl Obj {
    /// A new object with SQL text.
    pub fn sql(
        key: Key,
        section: Section,
        prio: u8,
        schema: &str,
        name: &str,
        label: String,
        sql: String,
    ) -> Obj {
        Obj {
            key,
            section,
            prio,
            schema: schema.to_string(),
            name: name.to_string(),
            label,
            body: Body::Sql(sql),
            deps: BTreeSet::new(),
            acl: String::new(),
        }
    }
}

/// Maps catalog references (as `pg_depend` records them) to the dump object that creates
/// them: a table's row type is the table, an array type its element type, a composite type's
/// relation the type, a view's `_RETURN` rule the view, an index behind a constraint the
/// constraint, an extension member the extension.
#[derive(Debug, Default)]
pub struct Aliases {
    map: HashMap<(u32, u32), (u32, u32)>,
}

impl Aliases {
    /// Records that (`class`, `oid`) is created along with (`to_class`, `to_oid`).
    pub fn add(&mut self, class: u32, oid: u32, to_class: u32, to_oid: u32) {
        if (class, oid) != (to_class, to_oid) {
            self.map.insert((class, oid), (to_class, to_oid));
        }
    }

    /// The main key of the object in `objects` that creates (`class`, `oid`), if any.
    pub fn resolve(&self, objects: &HashSet<Key>, class: u32, oid: u32) -> Option<Key> {
        let mut cur = (class, oid);
        for _ in 0..8 {
            let k = Key::main(cur.0, cur.1);
            if objects.contains(&k) {
                return Some(k);
            }
            cur = *self.map.get(&cur)?;
        }
        None
    }
}

/// Sorts `objs` into writing order: section by section, dependencies first, then by priority,
/// schema and name. A pre-data object that depends on a post-data constraint pulls that
/// constraint into pre-data (as pg_dump does for views relying on a primary key).
pub fn sort(mut objs: Vec<Obj>) -> Result<Vec<Obj>> {
    let index: HashMap<Key, usize> = objs.iter().enumerate().map(|(i, o)| (o.key, i)).collect();
    // Pull constraints needed by pre-data objects into pre-data (transitively).
    loop {
        let mut moved = false;
        for i in 0..objs.len() {
            if objs[i].section != Section::PreData {
                continue;
            }
            let deps: Vec<Key> = objs[i].deps.iter().copied().collect();
            for d in deps {
                if let Some(&j) = index.get(&d) {
                    if objs[j].section == Section::PostData && objs[j].prio == prio::CONSTRAINT {
                        objs[j].section = Section::PreData;
                        moved = true;
                    }
                }
            }
        }
        if !moved {
            break;
        }
    }
    let mut out = Vec::with_capacity(objs.len());
    let mut taken = vec![false; objs.len()];
    for section in [Section::PreData, Section::Data, Section::PostData] {
        let members: Vec<usize> = (0..objs.len())
            .filter(|&i| objs[i].section == section)
            .collect();
        let member_set: HashSet<usize> = members.iter().copied().collect();
        let mut pending: HashMap<usize, usize> = HashMap::new();
        let mut dependents: HashMap<usize, Vec<usize>> = HashMap::new();
        for &i in &members {
            let mut n = 0;
            for d in &objs[i].deps {
                if let Some(&j) = index.get(d) {
                    if j != i && member_set.contains(&j) {
                        n += 1;
                        dependents.entry(j).or_default().push(i);
                    }
                }
            }
            pending.insert(i, n);
        }
        let order_key = |i: usize| {
            let o = &objs[i];
            Reverse((o.prio, o.schema.clone(), o.name.clone(), o.key))
        };
        #[allow(clippy::type_complexity)]
        let mut heap: BinaryHeap<(Reverse<(u8, String, String, Key)>, usize)> = BinaryHeap::new();
        for &i in &members {
            if pending[&i] == 0 {
                heap.push((order_key(i), i));
            }
        }
        let mut done = 0;
        while let Some((_, i)) = heap.pop() {
            taken[i] = true;
            done += 1;
            out.push(i);
            if let Some(ds) = dependents.get(&i) {
                for &k in ds {
                    let p = pending.get_mut(&k).expect("pending");
                    *p -= 1;
                    if *p == 0 {
                        heap.push((order_key(k), k));
                    }
                }
            }
        }
        if done != members.len() {
            let stuck: Vec<String> = members
                .iter()
                .filter(|&&i| !taken[i])
                .map(|&i| objs[i].label.clone())
                .collect();
            return Err(Error::Unsupported(format!(
                "circular dependencies between {}; kstash cannot order them",
                stuck.join(", ")
            )));
        }
    }
    let mut slots: Vec<Option<Obj>> = objs.into_iter().map(Some).collect();
    Ok(out
        .into_iter()
        .map(|i| slots[i].take().expect("object"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(oid: u32, section: Section, p: u8, name: &str, deps: &[u32]) -> Obj {
        let mut x = Obj::sql(
            Key::main(class::CLASS, oid),
            section,
            p,
            "s",
            name,
            name.into(),
            String::new(),
        );
        x.deps = deps.iter().map(|&d| Key::main(class::CLASS, d)).collect();
        x
    }

    #[test]
    fn dependencies_beat_priority_and_name() {
        let objs = vec![
            o(1, Section::PreData, prio::TABLE, "a_view", &[2]),
            o(2, Section::PreData, prio::TABLE, "b_table", &[]),
            o(3, Section::PreData, prio::NAMESPACE, "z_schema", &[]),
            o(4, Section::PostData, prio::INDEX, "idx", &[2]),
        ];
        let names: Vec<String> = sort(objs).unwrap().into_iter().map(|o| o.name).collect();
        assert_eq!(names, ["z_schema", "b_table", "a_view", "idx"]);
    }

    #[test]
    fn cycles_are_reported_by_name() {
        let objs = vec![
            o(1, Section::PreData, prio::TABLE, "x", &[2]),
            o(2, Section::PreData, prio::TABLE, "y", &[1]),
        ];
        let e = sort(objs).unwrap_err().to_string();
        assert!(e.contains("x") && e.contains("y"), "{e}");
    }

    #[test]
    fn constraint_needed_by_a_view_moves_to_pre_data() {
        let objs = vec![
            o(1, Section::PreData, prio::TABLE, "v", &[2]),
            o(2, Section::PostData, prio::CONSTRAINT, "pk", &[3]),
            o(3, Section::PreData, prio::TABLE, "t", &[]),
        ];
        let names: Vec<String> = sort(objs).unwrap().into_iter().map(|o| o.name).collect();
        assert_eq!(names, ["t", "pk", "v"]);
    }
}
