//! Databases: the one a server is started for, and those `CREATE DATABASE` makes, each
//! with stores of its own (a CQL keyspace, or an embedded row store and index under the
//! data directory; its own collection prefix on a Qdrant server). A connection's
//! startup packet names its database; a name no `CREATE DATABASE` made reaches the
//! database the server was started for, as every name did before databases existed.
//!
//! The list of databases is kept in the first database's row store (its catalog, shared
//! by every proxy on a cluster); a database is opened at its first connection.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use futures::future::BoxFuture;

use crate::config::{Config, RowBackend, VectorBackend};
use crate::error::{Error, Result};
use crate::sql::{DatabaseAdmin, Engine};
use crate::store::Names;

/// Opens the stores a configuration names and builds an engine on them.
pub type Opener = Arc<dyn Fn(Config) -> BoxFuture<'static, Result<Arc<Engine>>> + Send + Sync>;

/// The names a server answers to for the database it was started for.
pub const DEFAULT_NAMES: [&str; 2] = [crate::sql::DATABASE, "postgres"];

pub struct Databases {
    me: Weak<Databases>,
    config: Config,
    opener: Opener,
    default: Arc<Engine>,
    open: tokio::sync::Mutex<HashMap<String, Arc<Engine>>>,
    /// Those this proxy knows to exist (made here or found in the list).
    known: parking_lot::RwLock<Vec<String>>,
}

impl std::fmt::Debug for Databases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Databases").finish_non_exhaustive()
    }
}

impl Databases {
    pub async fn new(
        config: Config,
        default: Arc<Engine>,
        opener: Opener,
    ) -> Result<Arc<Databases>> {
        let known = default.core().rows.list_names(Names::Database).await?;
        let dbs = Arc::new_cyclic(|me| Databases {
            me: me.clone(),
            config,
            opener,
            default: default.clone(),
            open: Default::default(),
            known: parking_lot::RwLock::new(known),
        });
        let admin: Weak<dyn DatabaseAdmin> = Arc::downgrade(&dbs) as Weak<Databases>;
        default.set_databases(admin);
        Ok(dbs)
    }

    pub fn default_engine(&self) -> &Arc<Engine> {
        &self.default
    }

    /// Whether `name` is a database CREATE DATABASE made (asking the shared list when
    /// this proxy does not know it).
    async fn exists(&self, name: &str) -> Result<bool> {
        if self.known.read().iter().any(|n| n == name) {
            return Ok(true);
        }
        let names = self.default.core().rows.list_names(Names::Database).await?;
        let found = names.iter().any(|n| n == name);
        *self.known.write() = names;
        Ok(found)
    }

    /// The engine of the database a connection names: one CREATE DATABASE made (opened
    /// at its first connection), or the server's own for any other name.
    pub async fn engine(&self, name: Option<&str>) -> Result<Arc<Engine>> {
        let Some(name) = name.filter(|n| !DEFAULT_NAMES.contains(n)) else {
            return Ok(self.default.clone());
        };
        if !self.exists(name).await? {
            return Ok(self.default.clone());
        }
        let mut open = self.open.lock().await;
        if let Some(e) = open.get(name) {
            return Ok(e.clone());
        }
        let engine = (self.opener)(self.config_of(name)).await?;
        let admin: Weak<dyn DatabaseAdmin> = self.me.clone();
        engine.set_databases(admin);
        open.insert(name.to_string(), engine.clone());
        Ok(engine)
    }

    /// The server's configuration with the stores of database `name`.
    fn config_of(&self, name: &str) -> Config {
        let mut config = self.config.clone();
        let stored = stored_name(name);
        config.data = self.config.data.join("databases").join(&stored);
        if let RowBackend::Scylla(cfg) = &mut config.rows {
            let mut keyspace = format!("{}_{stored}", cfg.keyspace);
            keyspace.truncate(48);
            cfg.keyspace = keyspace;
        }
        if let VectorBackend::Qdrant(settings) = &mut config.vectors {
            settings.collection_prefix = format!("{}{stored}_", settings.collection_prefix);
        }
        config
    }
}

#[async_trait::async_trait]
impl DatabaseAdmin for Databases {
    /// The databases CREATE DATABASE made, as this proxy last read them.
    fn names(&self) -> Vec<String> {
        let mut names = self.known.read().clone();
        names.sort();
        names
    }

    /// `CREATE DATABASE name`: entered in the list (42P04 if it is there), its stores
    /// made by opening them.
    async fn create(&self, name: &str) -> Result<()> {
        let exists = || Error::Detailed {
            code: "42P04",
            message: format!("database \"{name}\" already exists"),
            detail: String::new(),
        };
        if DEFAULT_NAMES.contains(&name) || self.exists(name).await? {
            return Err(exists());
        }
        // The list's own check holds across proxies creating one name at once.
        if !self
            .default
            .core()
            .rows
            .add_name(Names::Database, name)
            .await?
        {
            return Err(exists());
        }
        self.known.write().push(name.to_string());
        if let Err(e) = self.engine(Some(name)).await {
            let _ = self
                .default
                .core()
                .rows
                .remove_name(Names::Database, name)
                .await;
            self.known.write().retain(|n| n != name);
            return Err(e);
        }
        Ok(())
    }

    /// `DROP DATABASE name`: refused while a session uses it (55006); its tables are
    /// dropped (rows and collections), its stores removed and its name taken out.
    async fn drop_database(&self, name: &str, current: Option<&str>) -> Result<bool> {
        if DEFAULT_NAMES.contains(&name) {
            return Err(Error::FeatureNotSupported(format!(
                "database \"{name}\" is the one this server was started for: it cannot be dropped"
            )));
        }
        if !self.exists(name).await? {
            return Ok(false);
        }
        if current == Some(name) {
            return Err(Error::Detailed {
                code: "55006",
                message: "cannot drop the currently open database".into(),
                detail: String::new(),
            });
        }
        let engine = self.engine(Some(name)).await?;
        let mut open = self.open.lock().await;
        // Besides the map's handle and this one, each connection's (one made at its
        // startup, one its session holds).
        if Arc::strong_count(&engine) > 2 {
            let others = engine.sessions().max(1);
            return Err(Error::Detailed {
                code: "55006",
                message: format!("database \"{name}\" is being accessed by other users"),
                detail: format!(
                    "There {} {others} other session{} using the database.",
                    if others == 1 { "is" } else { "are" },
                    if others == 1 { "" } else { "s" }
                ),
            });
        }
        let core = engine.core().clone();
        for def in core.tables() {
            crate::engine::ddl::drop_table(&core, &def.name).await?;
        }
        for seq in core.sequence_defs() {
            core.drop_sequence(&seq.name).await?;
        }
        for schema in core.rows.list_names(Names::Schema).await? {
            core.rows.remove_name(Names::Schema, &schema).await?;
        }
        core.shutdown().await;
        open.remove(name);
        drop(engine);
        if let RowBackend::Embedded = self.config.rows {
            let dir = self.config_of(name).data;
            let _ = std::fs::remove_dir_all(&dir);
        }
        self.default
            .core()
            .rows
            .remove_name(Names::Database, name)
            .await?;
        self.known.write().retain(|n| n != name);
        Ok(true)
    }
}

impl Databases {
    /// Shut down the databases opened besides the server's own.
    pub async fn shutdown(&self) {
        let open: Vec<Arc<Engine>> = self.open.lock().await.drain().map(|(_, e)| e).collect();
        for engine in open {
            engine.core().shutdown().await;
            if let Err(e) = engine.index().flush().await {
                tracing::warn!(error = %e, "a database's vector index was not flushed");
            }
        }
    }
}

/// A database's name as its stores take it: letters, digits and underscores, with a
/// hash of the name when it had others (the same on every proxy).
fn stored_name(name: &str) -> String {
    let plain: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(24)
        .collect();
    if plain == name {
        return plain;
    }
    let h = name.bytes().fold(0xcbf2_9ce4_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("{plain}_{h:08x}")
}

#[cfg(test)]
mod tests {
    use super::stored_name;

    #[test]
    fn database_names_become_names_the_stores_take() {
        assert_eq!(stored_name("test_1"), "test_1");
        let odd = stored_name("My DB");
        assert!(odd.starts_with("my_db_"), "{odd}");
        assert_ne!(stored_name("My DB"), stored_name("my db"));
        assert!(stored_name(&"x".repeat(80)).len() <= 24 + 9);
    }
}
