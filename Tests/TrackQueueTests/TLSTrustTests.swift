import Foundation
import NIOSSL
import Testing

@testable import TrackQueue

/// Trust (issue 23): `--ca-file`, `--ca-only`, `--client-cert`, `--client-key`, and what a
/// TLS failure says. Whole processes against real TLS servers on 127.0.0.1 with certificates
/// made by `openssl` in the test.
@Suite(.serialized) struct TLSTrustTests {
    private func startDaemon(_ dir: borrowing TestDirectory, _ arguments: [String], name: String = "daemon") async throws
        -> TrackqProcess
    {
        try await TrackqProcess.startDaemon(
            dir, ["--retry-initial", "50ms", "--retry-max", "1h"] + arguments, environment: ["TRACKQ_TOKEN": "tls-test-token"],
            logName: name)
    }

    private func stop(_ daemon: TrackqProcess) async throws {
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
        #expect(!daemon.stderr.contains("tls-test-token"))
    }

    private func alert(_ probe: DatabaseProbe) throws -> (kind: String, message: String)? {
        let rows = try probe.strings("SELECT coalesce(alert_kind, 'none') || char(10) || coalesce(alert_message, '') FROM daemon_state")
        guard let row = rows.first, !row.hasPrefix("none") else { return nil }
        let parts = row.split(separator: "\n", maxSplits: 1).map(String.init)
        return (parts[0], parts.count > 1 ? parts[1] : "")
    }

    private func status(_ dir: borrowing TestDirectory) throws -> String {
        try runCommand(TrackqBinary.path, ["status", "--database", dir.database]).stdout
    }

    @Test func aPrivateCAIsTrustedWithCAFileAndNamedWithoutIt() async throws {
        let dir = try TestDirectory()
        var pki = TestPKI(in: dir.path)
        let ca = try pki.ca("Factory Inspection CA")
        let server = try await TestHTTPServer.start(tls: try TestPKI.serverTLS(try pki.certificate("127.0.0.1", signedBy: ca))) { _, _ in
            .ok()
        }
        let probe = DatabaseProbe(path: dir.database)

        let untrusting = try await startDaemon(dir, ["--endpoint", server.httpsURL], name: "untrusting")
        try DeliveryTests.enqueue(5, socket: dir.socket)
        try await waitUntil("the tls alert") { try alert(probe)?.kind == "tls" }
        let message = try #require(try alert(probe)?.message)
        #expect(
            message
                == "TLS: the API's certificate is not trusted (unknown CA: issued by CN=Factory Inspection CA): add that CA with --ca-file")
        #expect(try probe.strings("SELECT last_error FROM daemon_state") == [message])
        #expect(try status(dir).contains(message))
        #expect(untrusting.stderr.contains(message))
        #expect(!untrusting.stderr.contains("NIOSSL") && !message.contains("Error"))
        #expect(try probe.queued == 5)
        #expect(server.requestCount == 0)
        try await stop(untrusting)

        let trusting = try await startDaemon(dir, ["--endpoint", server.httpsURL, "--ca-file", ca.certificate], name: "trusting")
        try await waitUntil("the queue to drain") { try probe.queued == 0 }
        try await waitUntil("the alert to clear") { try alert(probe) == nil }
        #expect(DeliveryTests.deliveredSeqs(server, statuses: Array(repeating: 200, count: server.requestCount)) == Array(0..<5))
        try await stop(trusting)
        try await server.stop()
    }

    @Test func anExpiredCertificateSaysWhenItExpired() async throws {
        let dir = try TestDirectory()
        var pki = TestPKI(in: dir.path)
        let ca = try pki.ca("Test CA")
        let expired = try pki.certificate("127.0.0.1", signedBy: ca, days: 0)
        let notAfter = try #require(try NIOSSLCertificate.fromPEMFile(expired.certificate).first?.notValidAfter)
        let server = try await TestHTTPServer.start(tls: try TestPKI.serverTLS(expired)) { _, _ in .ok() }
        // The certificate is valid until the second it was made: past that, it has expired.
        try await waitUntil("the certificate to expire") { Int(Date().timeIntervalSince1970) > Int(notAfter) }
        let daemon = try await startDaemon(dir, ["--endpoint", server.httpsURL, "--ca-file", ca.certificate])
        try DeliveryTests.enqueue(3, socket: dir.socket)
        let probe = DatabaseProbe(path: dir.database)
        try await waitUntil("the tls alert") { try alert(probe)?.kind == "tls" }
        #expect(try alert(probe)?.message == "TLS: the API's certificate expired on \(TLSFailure.date(Int64(notAfter)))")
        #expect(try probe.queued == 3)
        try await stop(daemon)
        try await server.stop()
    }

    @Test func mutualTLSAsksNamesAndTakesTheClientCertificate() async throws {
        let dir = try TestDirectory()
        var pki = TestPKI(in: dir.path)
        let serverCA = try pki.ca("API CA")
        let clientCA = try pki.ca("Client CA")
        let otherCA = try pki.ca("Other CA")
        let client = try pki.certificate("edge-host-7", signedBy: clientCA, server: false)
        let stranger = try pki.certificate("edge-host-8", signedBy: otherCA, server: false)
        let server = try await TestHTTPServer.start(
            tls: try TestPKI.serverTLS(try pki.certificate("127.0.0.1", signedBy: serverCA), clientCA: clientCA)
        ) { _, _ in .ok() }
        let probe = DatabaseProbe(path: dir.database)
        let trust = ["--endpoint", server.httpsURL, "--ca-file", serverCA.certificate]

        let without = try await startDaemon(dir, trust, name: "without")
        try DeliveryTests.enqueue(4, socket: dir.socket)
        try await waitUntil("the tls alert") { try alert(probe)?.kind == "tls" }
        #expect(try alert(probe)?.message == "TLS: the API asked for a client certificate: set --client-cert and --client-key")
        try await stop(without)

        let refused = try await startDaemon(
            dir, trust + ["--client-cert", stranger.certificate, "--client-key", stranger.key], name: "refused")
        try await waitUntil("the tls alert for the stranger") { try alert(probe)?.message.contains("refused our") == true }
        #expect(
            try alert(probe)?.message == "TLS: the API refused our client certificate (--client-cert): its CA is not one the API trusts")
        try await stop(refused)

        let with = try await startDaemon(dir, trust + ["--client-cert", client.certificate, "--client-key", client.key], name: "with")
        try await waitUntil("the queue to drain") { try probe.queued == 0 }
        try await waitUntil("the alert to clear") { try alert(probe) == nil }
        #expect(server.requestCount >= 1)
        try await stop(with)
        try await server.stop()
    }

    @Test func sighupReadsTheTrustFilesAgainAndKeepsTheOldOnesWhenTheNewCannotBeUsed() async throws {
        let dir = try TestDirectory()
        var pki = TestPKI(in: dir.path)
        let oldCA = try pki.ca("Old CA")
        let newCA = try pki.ca("New CA")
        let caFile = dir.file("ca.pem")
        try FileManager.default.copyItem(atPath: oldCA.certificate, toPath: caFile)
        let server = try await TestHTTPServer.start(tls: try TestPKI.serverTLS(try pki.certificate("127.0.0.1", signedBy: newCA))) { _, _ in
            .ok()
        }
        let probe = DatabaseProbe(path: dir.database)
        let daemon = try await startDaemon(dir, ["--endpoint", server.httpsURL, "--ca-file", caFile])
        try DeliveryTests.enqueue(2, socket: dir.socket)
        try await waitUntil("the tls alert") { try alert(probe)?.message.contains("issued by CN=New CA") == true }

        // The operator puts the new CA in the file and reloads: taken at once.
        try FileManager.default.removeItem(atPath: caFile)
        try FileManager.default.copyItem(atPath: newCA.certificate, toPath: caFile)
        daemon.signal(SIGHUP)
        try await waitUntil("the queue to drain") { try probe.queued == 0 }
        try await waitUntil("the alert to clear") { try alert(probe) == nil }

        // A file that cannot be used: an alert naming it, and the trust read before stays.
        try "not a certificate\n".write(toFile: caFile, atomically: true, encoding: .utf8)
        daemon.signal(SIGHUP)
        try await waitUntil("the reload's alert") { try alert(probe)?.kind == "tls" }
        #expect(
            try alert(probe)?.message
                == "--ca-file \(caFile) holds no PEM certificate (-----BEGIN CERTIFICATE-----); "
                + "the files read before are still used: fix it, then send SIGHUP")
        try DeliveryTests.enqueue(3, socket: dir.socket)
        try await waitUntil("the new events delivered with the kept trust") { try probe.queued == 0 }
        #expect(try alert(probe)?.kind == "tls")  // a 2xx does not clear it: the file is still bad

        try FileManager.default.removeItem(atPath: caFile)
        try FileManager.default.copyItem(atPath: newCA.certificate, toPath: caFile)
        daemon.signal(SIGHUP)
        try await waitUntil("the alert to clear once the file is good") { try alert(probe) == nil }
        try await stop(daemon)
        try await server.stop()
    }

    @Test func theStartRefusesTrustFilesItCannotUseNamingThem() async throws {
        let dir = try TestDirectory()
        var pki = TestPKI(in: dir.path)
        let ca = try pki.ca("Test CA")
        let one = try pki.certificate("one", signedBy: ca, server: false)
        let two = try pki.certificate("two", signedBy: ca, server: false)
        let garbage = dir.file("garbage.pem")
        try "hello\n".write(toFile: garbage, atomically: true, encoding: .utf8)
        let cases: [([String], String)] = [
            (["--ca-file", dir.file("missing.pem")], "--ca-file \(dir.file("missing.pem")) cannot be read: no such file or directory"),
            (["--ca-file", garbage], "--ca-file \(garbage) holds no PEM certificate"),
            (["--client-cert", one.certificate, "--client-key", garbage], "--client-key \(garbage) holds no PEM private key"),
            (
                ["--client-cert", one.certificate, "--client-key", two.key],
                "--client-key \(two.key) is not the key of --client-cert \(one.certificate)"
            ),
            (["--client-cert", one.certificate], "--client-cert (TRACKQ_CLIENT_CERT) needs --client-key (TRACKQ_CLIENT_KEY)"),
            (["--ca-only"], "--ca-only (TRACKQ_CA_ONLY) needs --ca-file (TRACKQ_CA_FILE)"),
        ]
        for (index, (arguments, expected)) in cases.enumerated() {
            let process = try TrackqProcess(
                ["daemon", "--socket", dir.socket, "--database", dir.database, "--endpoint", "https://127.0.0.1:9/api/track"]
                    + arguments, stderrFile: dir.file("start-\(index).log"))
            #expect(try await process.waitForExit() == 2, "\(arguments)")
            #expect(process.stderr.contains(expected), "\(process.stderr)")
            #expect(!process.stderr.contains("NIOSSL"))
        }
        #expect(!FileManager.default.fileExists(atPath: dir.socket))
    }
}

/// What the trust settings make and what TLS failures say: pure values.
@Suite struct TLSWordsTests {
    @Test func boringSSLReasonsAreReadFromItsErrorLines() {
        #expect(
            TLSFailure.reason(in: "Error: 268435581 error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED at x.cc:1")
                == "CERTIFICATE_VERIFY_FAILED")
        #expect(TLSFailure.reason(in: "Error: 1 something else") == nil)
    }

    @Test func reasonsMapToFailures() {
        #expect(TLSFailure.classify(reasons: ["CERTIFICATE_VERIFY_FAILED"]) == .untrusted)
        #expect(TLSFailure.classify(reasons: ["TLSV1_ALERT_CERTIFICATE_REQUIRED"]) == .clientCertificateRequired)
        #expect(TLSFailure.classify(reasons: ["TLSV1_ALERT_UNKNOWN_CA"]) == .clientCertificateRefused("TLSV1_ALERT_UNKNOWN_CA"))
        #expect(TLSFailure.classify(reasons: ["WRONG_VERSION_NUMBER"]) == .notTLS)
        #expect(TLSFailure.classify(reasons: ["NO_SHARED_CIPHER"]) == .handshake("NO_SHARED_CIPHER"))
        #expect(TLSFailure.classify(reasons: []) == .handshake("no reason given"))
        #expect(!TLSFailure.handshake("X").needsPerson && TLSFailure.untrusted.needsPerson)
    }

    @Test func anExpiredClientCertificateSaysWhen() {
        let message = TLSFailure.clientCertificateRefused("SSLV3_ALERT_CERTIFICATE_EXPIRED").message(
            clientCertificateNotAfter: 1_767_225_600)
        #expect(message == "TLS: the API refused our client certificate (--client-cert): it has expired (on 2026-01-01 00:00 UTC)")
    }

    @Test func theProbesFindingsNameWhatFailed() {
        let now: Int64 = 1_800_000_000
        let leaf = TLSProbe.Facts(subject: "CN=api", issuer: "CN=Corp CA", notBefore: now - 100, notAfter: now + 100)
        #expect(
            TLSProbe.diagnosis([leaf], nowSeconds: now)
                == "the API's certificate is not trusted (unknown CA: issued by CN=Corp CA): add that CA with --ca-file")
        var expired = leaf
        expired.notAfter = now - 1
        #expect(TLSProbe.diagnosis([expired], nowSeconds: now) == "the API's certificate expired on \(TLSFailure.date(now - 1))")
        var early = leaf
        early.notBefore = now + 3600
        #expect(TLSProbe.diagnosis([early], nowSeconds: now)?.hasSuffix("is this host's clock right?") == true)
        let selfSigned = TLSProbe.Facts(subject: "CN=box", issuer: "CN=box", notBefore: 0, notAfter: now + 1)
        #expect(TLSProbe.diagnosis([selfSigned], nowSeconds: now)?.contains("self-signed: CN=box") == true)
        let caExpired = TLSProbe.Facts(subject: "CN=Corp CA", issuer: "CN=Root", notBefore: 0, notAfter: now - 10)
        #expect(TLSProbe.diagnosis([leaf, caExpired], nowSeconds: now)?.hasPrefix("the certificate of its CA CN=Corp CA expired") == true)
        // Names come from the API: a control character in one does not reach a log line.
        let hostile = TLSProbe.Facts(subject: "CN=x", issuer: "CN=evil\nFAKE LOG LINE", notBefore: 0, notAfter: now + 1)
        #expect(TLSProbe.diagnosis([hostile], nowSeconds: now)?.contains("\n") == false)
        #expect(TLSProbe.diagnosis([], nowSeconds: now) == nil)
    }

    @Test func caOnlyReplacesTheSystemsCAsAndCAFileAddsToThem() throws {
        let dir = try TestDirectory()
        var pki = TestPKI(in: dir.path)
        let ca = try pki.ca("Test CA")
        let added = try #require(try TLSTrust.load(.init(caFile: ca.certificate)).configuration)
        #expect(added.trustRoots == .default || added.trustRoots == nil)
        #expect(added.additionalTrustRoots.count == 1)
        let only = try #require(try TLSTrust.load(.init(caFile: ca.certificate, caOnly: true)).configuration)
        #expect(only.additionalTrustRoots.isEmpty)
        if case .certificates(let certificates) = only.trustRoots {
            #expect(certificates.count == 1)
        } else {
            Issue.record("--ca-only should trust the file's certificates only, got \(String(describing: only.trustRoots))")
        }
        #expect(try TLSTrust.load(.init()).configuration == nil)
    }

    @Test func aTLSFailureRaisesATLSAlertAndWaitsTheRetryMaximum() {
        var scheduler = DeliveryScheduler<ManualInstant>(backoff: Backoff(initial: .seconds(1), maximum: .seconds(300)))
        var random = SplitMix64(seed: 1)
        scheduler.begin(batchCount: 10)
        _ = scheduler.nextRange()
        let now = ManualInstant(offset: .zero)
        let actions = scheduler.handle(.tlsFailure("TLS: x"), now: now, using: &random)
        #expect(
            actions == [.raiseAlert(DeliveryAlert(kind: .tls, status: 0, message: "TLS: x")), .waitUntil(now.advanced(by: .seconds(300)))])
        #expect(scheduler.state == .alert)
    }

    @Test func aTLSFailureThatChangesIsNews() {
        var scheduler = DeliveryScheduler<ManualInstant>(backoff: Backoff(initial: .seconds(1), maximum: .seconds(300)))
        var random = SplitMix64(seed: 1)
        let now = ManualInstant(offset: .zero)
        for (message, raised) in [("TLS: unknown CA", true), ("TLS: unknown CA", false), ("TLS: expired on …", true)] {
            scheduler.begin(batchCount: 1)
            _ = scheduler.nextRange()
            let actions = scheduler.handle(.tlsFailure(message), now: now, using: &random)
            #expect(actions.contains(.raiseAlert(DeliveryAlert(kind: .tls, status: 0, message: message))) == raised, "\(message)")
        }
        #expect(scheduler.alert?.message == "TLS: expired on …")
    }

    @Test func aTokenReadWellDoesNotClearATrustFilesAlert() {
        var scheduler = DeliveryScheduler<ManualInstant>(backoff: Backoff(initial: .seconds(1), maximum: .seconds(300)))
        let alert = DeliveryAlert(kind: .tls, status: 0, message: "--ca-file x holds no PEM certificate")
        #expect(scheduler.raise(alert) == [.raiseAlert(alert)])
        #expect(scheduler.clearRaised(.auth).isEmpty)
        #expect(scheduler.alert == alert)
        #expect(scheduler.clearRaised(.tls) == [.clearAlert])
        #expect(scheduler.alert == nil)
    }

    /// A trust file that cannot be read again stands until it is fixed: an answer's alert
    /// (a 401) may hide it while it lasts, but the 2xx that clears that one shows it again.
    @Test func aStandingAlertHiddenByAnAnswersAlertIsShownAgainWhenThatClears() {
        var scheduler = DeliveryScheduler<ManualInstant>(backoff: Backoff(initial: .seconds(1), maximum: .seconds(300)))
        var random = SplitMix64(seed: 2)
        let now = ManualInstant(offset: .zero)
        let trust = DeliveryAlert(kind: .tls, status: 0, message: "--ca-file x holds no PEM certificate")
        let token = DeliveryAlert(kind: .auth, status: 0, message: "the token file is empty")
        #expect(scheduler.raise(trust) == [.raiseAlert(trust)])

        func answer(_ status: Int) -> [DeliveryAction<ManualInstant>] {
            scheduler.begin(batchCount: 1)
            _ = scheduler.nextRange()
            return scheduler.handle(.response(status: status, retryAfter: nil, body: ""), now: now, using: &random)
        }
        let refused = answer(401)
        #expect(scheduler.alert?.kind == .auth && scheduler.alert?.status == 401)
        #expect(refused.contains { if case .raiseAlert(let a) = $0 { a.status == 401 } else { false } })
        #expect(answer(200).contains(.raiseAlert(trust)), "the 2xx clears the 401's alert and shows the trust files' again")
        #expect(scheduler.alert == trust)
        #expect(answer(200).allSatisfy { $0 != .clearAlert }, "a 2xx does not clear a standing alert")

        // Two standing (the token and the trust files): clearing the active one shows the other.
        #expect(scheduler.raise(token) == [.raiseAlert(token)])
        #expect(scheduler.clearRaised(.tls).isEmpty, "the trust files' alert was not the active one")
        #expect(scheduler.alert == token)
        #expect(scheduler.raise(trust) == [.raiseAlert(trust)])
        #expect(scheduler.clearRaised(.tls) == [.raiseAlert(token)])
        #expect(scheduler.clearRaised(.auth) == [.clearAlert])
        #expect(scheduler.alert == nil)
    }
}
