//! restic-format repositories on opendal storage, laid out as KubeStash lays them out.
