//! The store's side of the graphs' dumps (`crate::graph_dump`): writing them all at
//! a clean shutdown, and never closing while a background one still holds the records.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::Store;
use crate::collection::Collection;
use crate::graph_dump::GraphDumps;

impl Store {
    /// Every live collection, for work that visits each without holding the map.
    pub(super) fn all_collections(&self) -> Vec<Arc<Collection>> {
        let collections = self.collections.read().expect("lock");
        collections.values().cloned().collect()
    }

    /// Writes the dump of every collection whose graph changed since its last one: at
    /// a clean shutdown, so the next start-up loads the graphs instead of rebuilding.
    /// Failures are logged, not returned (the next start-up rebuilds).
    pub fn persist_graphs(&self) {
        for coll in self.all_collections() {
            if coll.graph_changes.load(Ordering::SeqCst) == 0 {
                continue;
            }
            if let Err(e) = self.dumps.write(&coll) {
                tracing::error!(collection = %coll.config.name, error = %e, "cannot write the graph dump; the next start-up rebuilds");
            }
        }
    }

    /// Waits until no background graph dump runs (a benchmark timing the next open,
    /// or a test rewriting a dump file, must not race one).
    pub fn wait_for_graph_dumps(&self) {
        for coll in self.all_collections() {
            while coll.dump_running.load(Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }

    /// The graphs' dumps (tests and the start-up benchmark read them).
    pub fn graph_dumps(&self) -> &Arc<GraphDumps> {
        &self.dumps
    }
}

/// A store is closed only once no background graph dump holds its records open:
/// whoever drops it may reopen, restore or remove the database right after.
impl Drop for Store {
    fn drop(&mut self) {
        self.wait_for_graph_dumps();
    }
}
