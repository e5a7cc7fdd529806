import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// One HTTP/1.1 POST over a plain TCP socket, with one deadline for the whole exchange:
/// resolve, connect, send, and read the answer to its end.
///
/// etcd's JSON gateway needs nothing more, and this keeps pgcluster off
/// FoundationNetworking's URLSession, whose Linux implementation (libcurl sockets wrapped in
/// dispatch sources) crashes the process now and then when connections are refused or time
/// out — exactly what a watcher sees while etcd is down (swift-corelibs-foundation #4791).
/// The socket is blocking-free (`poll` with the time left), so a dead endpoint costs at most
/// the timeout, and the work runs on a thread of its own, off Swift's cooperative pool.
enum HTTPPost {
    struct Response: Sendable {
        var status: Int
        var body: Data
    }

    enum Failure: Error, Equatable, CustomStringConvertible {
        case refused
        case timedOut
        case unreachable(String)
        case badResponse(String)

        var description: String {
            switch self {
            case .refused: "connection refused"
            case .timedOut: "timed out"
            case .unreachable(let why): why
            case .badResponse(let why): "not an HTTP answer: \(why)"
            }
        }
    }

    /// POSTs `body` (JSON) to `url` (`http://host:port/path`); the answer whatever its
    /// status, or why there was none within `timeout` seconds.
    static func post(_ url: URL, body: Data, timeout: Double) async -> Result<Response, Failure> {
        let deadline = Deadline(seconds: timeout)
        return await Blocking.run { exchange(url, body: body, deadline: deadline) }
    }

    static func exchange(_ url: URL, body: Data, deadline: Deadline) -> Result<Response, Failure> {
        guard url.scheme == "http", let host = url.host, !host.isEmpty else {
            return .failure(.unreachable("only http:// endpoints are supported, not \(url.absoluteString)"))
        }
        let port = url.port ?? 80
        let path = url.path.isEmpty ? "/" : url.path
        let fd: Int32
        switch dial(host: host, port: port, deadline: deadline) {
        case .success(let socket): fd = socket
        case .failure(let failure): return .failure(failure)
        }
        defer { close(fd) }
        var request = Data(
            ("POST \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\nContent-Type: application/json\r\n"
                + "Content-Length: \(body.count)\r\nConnection: close\r\n\r\n").utf8)
        request.append(body)
        if let failure = transmit(fd, request, deadline: deadline) { return .failure(failure) }
        return collect(fd, deadline: deadline)
    }

    // MARK: Socket steps

    private static func dial(host: String, port: Int, deadline: Deadline) -> Result<Int32, Failure> {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let resolved = getaddrinfo(host, String(port), &hints, &list)
        guard resolved == 0, let first = list else {
            return .failure(.unreachable("cannot resolve \(host): \(String(cString: gai_strerror(resolved)))"))
        }
        defer { freeaddrinfo(first) }
        var failure = Failure.unreachable("no address for \(host)")
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let address = entry {
            entry = address.pointee.ai_next
            let fd = socket(address.pointee.ai_family, address.pointee.ai_socktype, address.pointee.ai_protocol)
            if fd < 0 { continue }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            var one: Int32 = 1
            _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            if connect(fd, address.pointee.ai_addr, address.pointee.ai_addrlen) == 0 { return .success(fd) }
            guard errno == EINPROGRESS else {
                failure = errnoFailure(errno)
                close(fd)
                continue
            }
            guard wait(fd, for: Int16(POLLOUT), deadline: deadline) else {
                close(fd)
                return .failure(.timedOut)
            }
            var error: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            _ = getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
            if error == 0 { return .success(fd) }
            failure = errnoFailure(error)
            close(fd)
        }
        return .failure(failure)
    }

    private static func transmit(_ fd: Int32, _ data: Data, deadline: Deadline) -> Failure? {
        var offset = 0
        while offset < data.count {
            let sent = data.withUnsafeBytes { bytes in
                send(fd, bytes.baseAddress! + offset, data.count - offset, Int32(MSG_NOSIGNAL))
            }
            if sent > 0 {
                offset += sent
            } else if sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                if !wait(fd, for: Int16(POLLOUT), deadline: deadline) { return .timedOut }
            } else {
                return errnoFailure(errno)
            }
        }
        return nil
    }

    private static func collect(_ fd: Int32, deadline: Deadline) -> Result<Response, Failure> {
        var received = Data()
        var buffer = [UInt8](repeating: 0, count: 16384)
        while true {
            if case .complete(let response) = parse(received, closed: false) { return .success(response) }
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count > 0 {
                received.append(contentsOf: buffer[0..<count])
            } else if count == 0 {
                switch parse(received, closed: true) {
                case .complete(let response): return .success(response)
                case .incomplete: return .failure(.badResponse("the connection closed after \(received.count) bytes"))
                case .invalid(let why): return .failure(.badResponse(why))
                }
            } else if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR {
                if !wait(fd, for: Int16(POLLIN), deadline: deadline) { return .failure(.timedOut) }
            } else {
                return .failure(errnoFailure(errno))
            }
        }
    }

    /// Waits until `fd` is ready for `events`; false when the deadline passed first.
    private static func wait(_ fd: Int32, for events: Int16, deadline: Deadline) -> Bool {
        while true {
            let left = deadline.millisecondsLeft
            if left <= 0 { return false }
            var entry = pollfd(fd: fd, events: events, revents: 0)
            let ready = poll(&entry, 1, Int32(left))
            if ready > 0 { return true }
            if ready < 0 && errno != EINTR { return true }  // the next call reports the error
        }
    }

    private static func errnoFailure(_ code: Int32) -> Failure {
        switch code {
        case ECONNREFUSED: .refused
        case ETIMEDOUT: .timedOut
        default: .unreachable(String(cString: strerror(code)))
        }
    }

    // MARK: Parsing

    /// An HTTP/1.1 answer from the bytes received so far: complete once its body is whole
    /// (by Content-Length, chunks, or the connection closing).
    static func parse(_ bytes: Data, closed: Bool) -> ParsedResponse {
        let separator = Data("\r\n\r\n".utf8)
        guard let end = bytes.range(of: separator) else {
            return closed && !bytes.isEmpty ? .invalid("no header end in \(bytes.count) bytes") : .incomplete
        }
        let head = String(decoding: bytes[bytes.startIndex..<end.lowerBound], as: UTF8.self)
        var lines = head.components(separatedBy: "\r\n")
        let statusLine = lines.removeFirst().split(separator: " ", maxSplits: 2)
        guard statusLine.count >= 2, statusLine[0].hasPrefix("HTTP/"), let status = Int(statusLine[1]) else {
            return .invalid("a status line of '\(lines.first ?? head.prefix(40).description)'")
        }
        var headers: [String: String] = [:]
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let body = bytes[end.upperBound...]
        if headers["transfer-encoding"]?.lowercased().contains("chunked") == true {
            switch dechunk(body) {
            case .some(let whole): return .complete(Response(status: status, body: whole))
            case .none: return closed ? .invalid("the connection closed inside a chunked body") : .incomplete
            }
        }
        if let length = headers["content-length"].flatMap({ Int($0) }) {
            if body.count >= length { return .complete(Response(status: status, body: Data(body.prefix(length)))) }
            return closed ? .invalid("the connection closed \(length - body.count) bytes before the body's end") : .incomplete
        }
        return closed ? .complete(Response(status: status, body: Data(body))) : .incomplete
    }

    enum ParsedResponse {
        case complete(Response)
        case incomplete
        case invalid(String)
    }

    /// The body of a chunked transfer once its last (empty) chunk has arrived; nil before.
    static func dechunk(_ bytes: Data.SubSequence) -> Data? {
        var whole = Data()
        var index = bytes.startIndex
        let lineEnd = Data("\r\n".utf8)
        while true {
            guard let sizeEnd = bytes[index...].range(of: lineEnd) else { return nil }
            let sizeText = String(decoding: bytes[index..<sizeEnd.lowerBound], as: UTF8.self)
                .split(separator: ";").first.map(String.init) ?? ""
            guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16) else { return nil }
            let start = sizeEnd.upperBound
            if size == 0 { return whole }
            guard bytes.distance(from: start, to: bytes.endIndex) >= size + 2 else { return nil }
            let stop = bytes.index(start, offsetBy: size)
            whole.append(bytes[start..<stop])
            index = bytes.index(stop, offsetBy: 2)
        }
    }
}

/// A point in time a piece of work must finish by (monotonic clock).
struct Deadline: Sendable {
    let end: UInt64

    init(seconds: Double) {
        end = DispatchTime.now().uptimeNanoseconds + UInt64(max(0, seconds) * 1_000_000_000)
    }

    var millisecondsLeft: Int {
        let now = DispatchTime.now().uptimeNanoseconds
        return now >= end ? 0 : Int((end - now + 999_999) / 1_000_000)
    }
}
