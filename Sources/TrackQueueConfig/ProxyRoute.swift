import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The HTTP proxy delivery goes through: `--proxy URL`, else the environment as curl reads
/// it (`https_proxy`/`HTTPS_PROXY` for an https endpoint, `http_proxy`/`HTTP_PROXY` for an
/// http one, lower case first), unless `no_proxy`/`NO_PROXY` names the endpoint's host.
///
/// An https endpoint is reached with `CONNECT` through it (TLS stays end to end); an http
/// one by sending the request to the proxy. Credentials in the URL go in
/// `Proxy-Authorization`, and never into a log, the status or a message.
public struct ProxyRoute: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var username: String?
    public var password: String?
    /// Where it came from: `--proxy`, `HTTPS_PROXY`, …
    public var source: String

    package init(host: String, port: Int, username: String? = nil, password: String? = nil, source: String) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.source = source
    }

    /// `http://host:port`, for logs and messages: never the credentials.
    public var shown: String {
        let name = host.contains(":") ? "[\(host)]" : host
        return "http://\(username == nil ? "" : "…@")\(name):\(port)"
    }

    /// `--proxy` as given.
    public enum Setting: Sendable, Equatable {
        /// `none`: no proxy, whatever the environment says.
        case none
        /// A proxy URL.
        case url(ProxyRoute)
    }

    /// The port curl assumes when a proxy URL has none.
    package static let defaultPort = 1080

    /// The proxy for `endpoint`: `setting` (`--proxy`; `none` for no proxy whatever the
    /// environment says) when given, else the environment's, unless its no-proxy list names
    /// the endpoint's host. A URL that cannot be used is an error naming where it came from,
    /// without its credentials.
    package static func choose(endpoint: String, setting: Setting?, environment: [String: String]) throws(ConfigurationError)
        -> ProxyRoute?
    {
        switch setting {
        case .none?: return nil
        case .url(let route)?: return route
        case nil: break
        }
        guard let url = URL(string: endpoint), let host = url.host?.lowercased() else { return nil }
        let names = url.scheme?.lowercased() == "http" ? ["http_proxy", "HTTP_PROXY"] : ["https_proxy", "HTTPS_PROXY"]
        guard let name = names.first(where: { !(environment[$0] ?? "").isEmpty }), let text = environment[name] else { return nil }
        let noProxy = ["no_proxy", "NO_PROXY"].lazy.compactMap { environment[$0] }.first { !$0.isEmpty } ?? ""
        if bypasses(host: host, noProxy: noProxy) { return nil }
        return try parse(text, source: name)
    }

    /// Parses `[http://][user[:password]@]host[:port]`.
    package static func parse(_ text: String, source: String) throws(ConfigurationError) -> ProxyRoute {
        func refuse(_ reason: String) -> ConfigurationError {
            ConfigurationError("the proxy \(redacted(text)) (\(source)) \(reason)")
        }
        var rest = Substring(text.trimmingCharacters(in: .whitespaces))
        if let schemeEnd = rest.range(of: "://") {
            let scheme = rest[..<schemeEnd.lowerBound].lowercased()
            guard scheme == "http" else {
                throw refuse("is not an http:// proxy: trackq speaks to proxies in plain HTTP (CONNECT keeps TLS to the API)")
            }
            rest = rest[schemeEnd.upperBound...]
        }
        if let slash = rest.firstIndex(of: "/") {
            guard rest[slash...].allSatisfy({ $0 == "/" }) else { throw refuse("has a path: give only http://host:port") }
            rest = rest[..<slash]
        }
        var username: String?
        var password: String?
        if let at = rest.lastIndex(of: "@") {
            let userinfo = rest[..<at]
            rest = rest[rest.index(after: at)...]
            let (user, pass) =
                userinfo.firstIndex(of: ":").map { (userinfo[..<$0], Optional(userinfo[userinfo.index(after: $0)...])) }
                ?? (userinfo, nil)
            guard let decodedUser = String(user).removingPercentEncoding,
                let decodedPassword = pass.map({ String($0).removingPercentEncoding }) ?? Optional("")
            else { throw refuse("has credentials that are not valid percent-encoding") }
            username = decodedUser
            password = pass == nil ? nil : decodedPassword
        }
        var host: Substring
        var portText: Substring?
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { throw refuse("has an unclosed [ in its host") }
            host = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw refuse("has text after its host") }
                portText = after.dropFirst()
            }
        } else if let colon = rest.lastIndex(of: ":") {
            host = rest[..<colon]
            portText = rest[rest.index(after: colon)...]
        } else {
            host = rest
        }
        guard !host.isEmpty, host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-._:".contains($0)) }) else {
            throw refuse("has no host, or one with characters a host name cannot have")
        }
        var port = defaultPort
        if let portText {
            guard let value = Int(portText), (1...65535).contains(value), portText.allSatisfy(\.isNumber) else {
                throw refuse("has a port that is not 1 to 65535")
            }
            port = value
        }
        return ProxyRoute(host: String(host), port: port, username: username, password: password, source: source)
    }

    /// Whether `noProxy` (curl's form: comma-separated; `*` for every host; a name matches
    /// itself and its subdomains, a leading dot ignored; an IP address itself; `a.b.c.d/n` a
    /// network of IPv4 addresses) names `host`.
    package static func bypasses(host: String, noProxy: String) -> Bool {
        let host = host.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        for raw in noProxy.split(whereSeparator: { $0 == "," || $0 == " " }) {
            var entry = raw.lowercased().trimmingCharacters(in: .whitespaces)
            if entry == "*" { return true }
            entry = entry.trimmingCharacters(in: CharacterSet(charactersIn: "."))
            entry = entry.trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
            guard !entry.isEmpty else { continue }
            if let slash = entry.firstIndex(of: "/") {
                if let network = ipv4(String(entry[..<slash])), let bits = Int(entry[entry.index(after: slash)...]),
                    (0...32).contains(bits), let address = ipv4(host)
                {
                    let mask: UInt32 = bits == 0 ? 0 : ~UInt32(0) << UInt32(32 - bits)
                    if address & mask == network & mask { return true }
                }
                continue
            }
            if host == entry || (ipv4(host) == nil && !host.contains(":") && host.hasSuffix("." + entry)) { return true }
        }
        return false
    }

    /// A dotted IPv4 address as `inet_pton` reads it (as curl does for these lists).
    private static func ipv4(_ text: String) -> UInt32? {
        var address = in_addr()
        guard inet_pton(AF_INET, text, &address) == 1 else { return nil }
        return UInt32(bigEndian: address.s_addr)
    }

    /// `text` with any credentials replaced by `…`.
    package static func redacted(_ text: String) -> String {
        guard let at = text.lastIndex(of: "@") else { return String(reflecting: String(text.prefix(200))) }
        let schemeEnd = text.range(of: "://")?.upperBound ?? text.startIndex
        let shown = schemeEnd <= at ? text[..<schemeEnd] + "…" + text[at...] : "…" + text[at...]
        return String(reflecting: String(shown.prefix(200)))
    }
}

// Printed settings (a debug log prints the whole DaemonSettings) show where the proxy is,
// never its credentials.
extension ProxyRoute: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String { "\(shown) (\(source))" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["proxy": description]) }
}
