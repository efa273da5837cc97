//! CPU pinning plans, in one place for the three programs: bench-server `--pin` puts its threads
//! on the cores this process may use, in order ([`server_cores`]); the pipeline gives load-gen the
//! cores left over ([`client_cores`], passed as `load-gen run --cpus`); load-gen puts its thread i
//! on the i-th core of that list, round robin ([`round_robin`]). Cores are named by their ids, as
//! `taskset` and `/sys` name them.

/// The ids of the cores this process may run on (its affinity mask), in increasing order; empty
/// when they cannot be read (then nothing is pinned).
pub fn allowed() -> Vec<usize> {
    let mut ids: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .iter()
        .map(|c| c.id)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The core of each of a server's `threads` threads: thread i on the i-th allowed core, round robin
/// when there are more threads than cores. Empty when no core is allowed.
pub fn server_cores(threads: usize) -> Vec<usize> {
    server_plan(&allowed(), threads)
}

/// The cores a client may use beside a server whose `server_threads` threads are pinned by
/// [`server_cores`]: the allowed cores after the server's, or `None` when none is left over (then
/// the client is not pinned).
pub fn client_cores(server_threads: usize) -> Option<Vec<usize>> {
    client_plan(&allowed(), server_threads)
}

/// The core of thread `i` given a list of cores: the i-th, round robin. The list must not be empty.
pub fn round_robin(list: &[usize], i: usize) -> usize {
    list[i % list.len()]
}

/// Pin the calling thread to core `id`; false when the system refuses.
pub fn pin_current(id: usize) -> bool {
    core_affinity::set_for_current(core_affinity::CoreId { id })
}

fn server_plan(allowed: &[usize], threads: usize) -> Vec<usize> {
    if allowed.is_empty() {
        return Vec::new();
    }
    (0..threads).map(|i| round_robin(allowed, i)).collect()
}

fn client_plan(allowed: &[usize], server_threads: usize) -> Option<Vec<usize>> {
    (server_threads < allowed.len()).then(|| allowed[server_threads..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_takes_the_first_cores_and_the_client_the_rest() {
        let allowed = [0, 1, 4, 5];
        assert_eq!(server_plan(&allowed, 1), [0]);
        assert_eq!(server_plan(&allowed, 2), [0, 1]);
        assert_eq!(client_plan(&allowed, 1), Some(vec![1, 4, 5]));
        assert_eq!(client_plan(&allowed, 2), Some(vec![4, 5]));
        // More server threads than cores: round robin, and nothing is left for the client.
        assert_eq!(server_plan(&allowed, 6), [0, 1, 4, 5, 0, 1]);
        assert_eq!(client_plan(&allowed, 4), None);
        assert_eq!(client_plan(&allowed, 6), None);
        // Two cores, as on the reference machine: server on 0, client on 1.
        assert_eq!(server_plan(&[0, 1], 1), [0]);
        assert_eq!(client_plan(&[0, 1], 1), Some(vec![1]));
        assert_eq!(client_plan(&[0, 1], 2), None);
        // No core known: nothing pinned.
        assert!(server_plan(&[], 3).is_empty());
        assert_eq!(client_plan(&[], 0), None);
        assert_eq!(server_plan(&allowed, 0), Vec::<usize>::new());
    }

    #[test]
    fn round_robin_wraps() {
        let list = [2, 3, 7];
        let picked: Vec<usize> = (0..7).map(|i| round_robin(&list, i)).collect();
        assert_eq!(picked, [2, 3, 7, 2, 3, 7, 2]);
        assert_eq!(round_robin(&[1], 5), 1);
    }

    #[test]
    fn allowed_is_this_processs_affinity_in_order() {
        let cores = allowed();
        assert!(cores.windows(2).all(|w| w[0] < w[1]), "{cores:?}");
        assert_eq!(server_cores(cores.len()), cores);
        if cfg!(target_os = "linux") {
            // The kernel's own account, read another way.
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let list = status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .unwrap()
                .trim();
            assert_eq!(cores, crate::parse_cpu_list(list).unwrap());
        }
        if let Some(&first) = cores.first() {
            let pinned = std::thread::spawn(move || pin_current(first))
                .join()
                .unwrap();
            assert!(pinned, "pinning a thread to core {first}");
        }
    }
}
