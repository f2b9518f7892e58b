//! The bus contract: every `Bus` implementation passes these unchanged.

mod suite;

mod memory {
    use std::sync::Arc;

    use rje_bus::{Bus, MemoryBus};

    pub async fn bus() -> (Arc<dyn Bus>, ()) {
        (Arc::new(MemoryBus::new()), ())
    }

    crate::bus_contract!(bus);
}
