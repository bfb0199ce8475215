//! Where each key of the policy's modules and clients is written, for
//! `explain --trace`. The loader keeps only each table's header (a key's
//! position for every module of a large policy would cost every session
//! memory for nothing); a trace reads the files again and finds the keys.
//! A file whose tables no longer sit where the loaded policy found them has
//! changed since: its keys are left out, and the trace keeps the headers.

use std::collections::BTreeMap;
use std::path::PathBuf;

use toml::de::{DeTable, DeValue};

use super::{Origin, Policy, Source};

/// The positions of the keys of the policy's `[modules.*]` and
/// `[clients.*]` tables (and of each entry of their arrays).
#[derive(Debug, Clone, Default)]
pub struct KeyOrigins {
    /// (`modules` or `clients`, table name, key) → the key's position and
    /// each array entry's.
    keys: BTreeMap<(&'static str, String, String), Located>,
    /// Tables whose keys were found.
    tables: BTreeMap<(&'static str, String), ()>,
    /// Files that changed since the policy was loaded.
    pub changed: Vec<PathBuf>,
}

#[derive(Debug, Clone)]
struct Located {
    key: Origin,
    /// Array entries: position and value (strings only).
    items: Vec<(Origin, Option<String>)>,
}

impl KeyOrigins {
    /// Read the policy's files again and find its keys.
    pub fn read(policy: &Policy) -> KeyOrigins {
        let mut out = KeyOrigins::default();
        for file in &policy.files {
            let Ok(text) = super::read_bounded(file) else {
                out.changed.push(file.clone());
                continue;
            };
            let src = Source::new(file.clone(), text);
            let mut found = KeyOrigins::default();
            if found.file(policy, &src).is_err() {
                out.changed.push(file.clone());
                continue;
            }
            out.keys.append(&mut found.keys);
            out.tables.append(&mut found.tables);
        }
        out
    }

    /// One file's keys; `Err` when its tables are not where the loaded
    /// policy found them.
    fn file(&mut self, policy: &Policy, src: &Source) -> Result<(), ()> {
        let doc = DeTable::parse(&src.text).map_err(|_| ())?;
        for (section, value) in doc.get_ref() {
            let kind: &'static str = match section.get_ref().as_ref() {
                "modules" => "modules",
                "clients" => "clients",
                _ => continue,
            };
            let DeValue::Table(tables) = value.get_ref() else {
                continue;
            };
            for (name, table) in tables {
                let name_text = name.get_ref().to_string();
                // Where the loader places a table: its `[header]`, or the
                // name of an inline one.
                let written_as_header = matches!(table.get_ref(), DeValue::Table(_))
                    && src
                        .text
                        .get(table.span())
                        .is_some_and(|t| t.starts_with('['));
                let header = src.origin(if written_as_header {
                    table.span()
                } else {
                    name.span()
                });
                let loaded = match kind {
                    "modules" => policy.modules.get(&name_text).map(|m| &m.origin),
                    _ => policy.clients.get(&name_text).map(|c| &c.origin),
                };
                match loaded {
                    Some(o) if *o == header => {}
                    // Defined in another file (a redefinition is an error
                    // the loader reported): not this file's.
                    Some(o) if o.file != header.file => continue,
                    _ => return Err(()),
                }
                let DeValue::Table(keys) = table.get_ref() else {
                    continue;
                };
                self.tables.insert((kind, name_text.clone()), ());
                for (key, v) in keys {
                    let items = match v.get_ref() {
                        DeValue::Array(a) => a
                            .iter()
                            .map(|e| {
                                let text = match e.get_ref() {
                                    DeValue::String(s) => Some(s.to_string()),
                                    _ => None,
                                };
                                (src.origin(e.span()), text)
                            })
                            .collect(),
                        _ => Vec::new(),
                    };
                    self.keys.insert(
                        (kind, name_text.clone(), key.get_ref().to_string()),
                        Located {
                            key: src.origin(key.span()),
                            items,
                        },
                    );
                }
            }
        }
        Ok(())
    }

    /// Were the module's keys found (so a key not found is not set)?
    pub fn knows_module(&self, module: &str) -> bool {
        self.tables.contains_key(&("modules", module.to_string()))
    }

    /// Where a module's key is set.
    pub fn module_key(&self, module: &str, key: &str) -> Option<&Origin> {
        self.keys
            .get(&("modules", module.to_string(), key.to_string()))
            .map(|l| &l.key)
    }

    /// Where a client's key is set.
    pub fn client_key(&self, client: &str, key: &str) -> Option<&Origin> {
        self.keys
            .get(&("clients", client.to_string(), key.to_string()))
            .map(|l| &l.key)
    }

    /// The `index`th entry of a client's array key.
    pub fn client_item(&self, client: &str, key: &str, index: usize) -> Option<&Origin> {
        self.keys
            .get(&("clients", client.to_string(), key.to_string()))
            .and_then(|l| l.items.get(index))
            .map(|(o, _)| o)
    }

    /// The entry of a client's `modules` that names `module`.
    pub fn client_module(&self, client: &str, module: &str) -> Option<&Origin> {
        self.keys
            .get(&("clients", client.to_string(), "modules".to_string()))
            .and_then(|l| l.items.iter().find(|(_, v)| v.as_deref() == Some(module)))
            .map(|(o, _)| o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_entries_are_found_and_changes_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        let text = "[modules.www]\npath = \"/srv/www\"\n\n[modules.up]\npath = \"/srv/up\"\nread_only = false\ndelete = true\n\n\
                    [clients.c]\nmodules = [\"www\", \"up\"]\nfrom = [\"192.0.2.0/24\", \"2001:db8::/32\"]\n";
        std::fs::write(&path, text).unwrap();
        let p = super::super::load_text(&path, text).unwrap();
        let k = KeyOrigins::read(&p);
        assert!(k.changed.is_empty());
        let at = |o: Option<&Origin>| o.map(|o| (o.line, o.col));
        assert_eq!(at(k.module_key("up", "delete")), Some((7, 1)));
        assert_eq!(at(k.module_key("up", "read_only")), Some((6, 1)));
        assert_eq!(k.module_key("www", "delete"), None);
        assert!(k.knows_module("www") && !k.knows_module("nope"));
        assert_eq!(at(k.client_key("c", "from")), Some((11, 1)));
        assert_eq!(at(k.client_item("c", "from", 1)), Some((11, 25)));
        assert_eq!(at(k.client_module("c", "up")), Some((10, 19)));
        assert_eq!(k.client_module("c", "backup"), None);
        // The file changed since: its keys are not trusted.
        std::fs::write(&path, format!("\n{text}")).unwrap();
        let k = KeyOrigins::read(&p);
        assert_eq!(k.changed, vec![path.clone()]);
        assert_eq!(k.module_key("up", "delete"), None);
        assert!(!k.knows_module("up"));
    }
}
