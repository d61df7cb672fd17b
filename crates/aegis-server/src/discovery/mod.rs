//! Discovery: browses `_aegis-ota._tcp` with one mDNS daemon and turns announcements into
//! sightings (or rejected sightings, with the reason) for the device registry.
