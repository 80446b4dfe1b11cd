#if canImport(Glibc)
    import Glibc
#endif

/// The machine's cores and the process' descriptor limit, for defaults.
public enum System {
    package static var coreCount: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

    /// `RLIMIT_NOFILE` as each C library spells it (an enum in glibc, an `Int32` in Darwin's).
    #if os(Linux)
        static let noFile = Int32(RLIMIT_NOFILE.rawValue)
    #else
        static let noFile = RLIMIT_NOFILE
    #endif

    /// The soft limit on open files (`RLIMIT_NOFILE`).
    package static var openFileLimit: Int {
        var limit = rlimit()
        guard getrlimit(System.noFile, &limit) == 0 else { return 1024 }
        return Int(clamping: limit.rlim_cur)
    }

    /// Raises the soft open-file limit to the hard one (start-up: every connection is a descriptor).
    /// - Returns: the soft limit now.
    @discardableResult
    public static func raiseOpenFileLimit() -> Int {
        var limit = rlimit()
        if getrlimit(System.noFile, &limit) == 0, limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            _ = setrlimit(System.noFile, &limit)
        }
        return openFileLimit
    }
}
