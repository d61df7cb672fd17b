//! The AegisOTA server: discovery, device registry, firmware library, rollouts, audit and the
//! web/API front. Not built yet (issue 4); this crate exists so the workspace has its final shape.
