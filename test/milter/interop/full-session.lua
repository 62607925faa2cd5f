-- Interop: OpenDKIM's miltertest (the MTA side) drives a full milter session against our milter.
--
--   MILTER_SOCKET=inet:PORT@127.0.0.1 miltertest -v -s test/milter/interop/full-session.lua
--   MILTER_SOCKET=unix:/path/to/milter.sock miltertest -v -s test/milter/interop/full-session.lua
--
-- Run by test/milter/miltertest.test.ts. Every failed check calls error(), so miltertest exits 1;
-- the reason goes to stderr as "FAILED: ..." (see the end of this file).
--
-- One connection, three messages:
--   1. IPv6 connect info, HELO, macros, MAIL/RCPT, headers with two forged copies of our trace
--      header, EOH, EOM: SMFIR_ACCEPT, our X-Ceerion-Milter inserted at the top, both forged
--      copies deleted (CHGHEADER with an empty value).
--   2. MAIL/RCPT/headers, then SMFIC_ABORT: the connection must stay usable.
--   3. A clean message to completion: SMFIR_ACCEPT and a fresh trace header, nothing deleted.
--
-- Things about miltertest (v1.6.0, Debian 2.11.0~beta2) that shaped this script:
--   * mt.negotiate(conn, version, steps, actions): the man page says (version, actions, steps)
--     but miltertest.c reads argument 3 as the protocol steps (SMFIP_*) and argument 4 as the
--     actions (SMFIF_*); verified on the wire. We pass what libmilter's SMFI_CURR_PROT and
--     SMFI_CURR_ACTS offer, i.e. everything, as Postfix does.
--   * Our milter answers the options with SMFIP_NR_* for every stage no check decides at (here:
--     connect, HELO, MAIL, RCPT, DATA, header, EOH, body), SMFIP_NODATA/NOUNKNOWN, and SMFIP_NOBODY
--     because no check reads the body. miltertest honours the NR_* bits (it does not read a reply
--     and reports a made-up SMFIR_CONTINUE from mt.getreply), so replies are checked only at stages
--     that were not negotiated as no-reply. A milter that replied anyway would desynchronise the
--     stream and the EOM check below would read a stale CONTINUE and fail.
--   * miltertest refuses to send a step the milter negotiated away (SMFIP_NO*): "It is up to the
--     test author to use mt.test_option()" (man miltertest). So DATA and the body are sent only if
--     negotiated; mt.eom() fills in nothing for skipped steps.
--   * With SMFIP_HDR_LEADSPC negotiated (we ask for it) miltertest puts the space after the colon
--     into each header value itself, and expects the same from the milter's header changes.
--   * mt.eom_check(conn, MT_HDRCHANGE, name, value, index) reads the index from the value's
--     argument slot (a miltertest bug), so deletions are checked with MT_HDRCHANGE (name, "") and
--     MT_HDRDELETE (name, index), whose index handling is right.
--   * mt.conninfo() always sends port 12345; the family is '6' for any address inet_pton(AF_INET6)
--     accepts, and the address goes on the wire as written (no "IPv6:" prefix).

local HEADER = "X-Ceerion-Milter"
local HOSTNAME = "mx.test" -- hostname in the test milter's config (test/helpers/milter.ts)

local function fail(fmt, ...)
	error(string.format(fmt, ...), 0)
end

local function check(cond, fmt, ...)
	if not cond then
		fail(fmt, ...)
	end
end

-- miltertest functions return nil on success and an error string on failure.
local function ok(err, what)
	if err ~= nil then
		fail("%s failed: %s", what, tostring(err))
	end
end

local REPLY_NAMES = {
	[SMFIR_ACCEPT] = "SMFIR_ACCEPT",
	[SMFIR_CONTINUE] = "SMFIR_CONTINUE",
	[SMFIR_REJECT] = "SMFIR_REJECT",
	[SMFIR_TEMPFAIL] = "SMFIR_TEMPFAIL",
	[SMFIR_DISCARD] = "SMFIR_DISCARD",
	[SMFIR_REPLYCODE] = "SMFIR_REPLYCODE",
}

local function reply_name(r)
	local name = REPLY_NAMES[r]
	if name then
		return name
	end
	if r == 0 then
		return "no reply"
	end
	return string.format("reply %q", string.char(math.tointeger(r) or 0))
end

local conn -- set by main()

local function expect_reply(want, what)
	local r = mt.getreply(conn)
	check(r == want, "%s: expected %s, got %s", what, reply_name(want), reply_name(r))
end

-- A reply is on the wire only if the milter did not negotiate the stage's SMFIP_NR_* bit.
local function expect_continue(what, nr_flag)
	if not mt.test_option(conn, nr_flag) then
		expect_reply(SMFIR_CONTINUE, what)
	end
end

-- One message: MAIL, RCPTs, (DATA), headers, EOH, (body). EOM is left to the caller.
local function send_message(m)
	if m.mail_macros then
		ok(mt.macro(conn, SMFIC_MAIL, table.unpack(m.mail_macros)), "mt.macro(SMFIC_MAIL)")
	end
	ok(mt.mailfrom(conn, table.unpack(m.from)), "mt.mailfrom()")
	expect_continue("MAIL FROM", SMFIP_NR_MAIL)
	for _, rcpt in ipairs(m.rcpts) do
		ok(mt.macro(conn, SMFIC_RCPT, "{rcpt_addr}", (rcpt:gsub("[<>]", ""))), "mt.macro(SMFIC_RCPT)")
		ok(mt.rcptto(conn, rcpt), "mt.rcptto()")
		expect_continue("RCPT TO " .. rcpt, SMFIP_NR_RCPT)
	end
	if not mt.test_option(conn, SMFIP_NODATA) then
		ok(mt.data(conn), "mt.data()")
		expect_continue("DATA", SMFIP_NR_DATA)
	end
	for _, h in ipairs(m.headers) do
		ok(mt.header(conn, h[1], h[2]), "mt.header(" .. h[1] .. ")")
		expect_continue("header " .. h[1], SMFIP_NR_HDR)
	end
	if m.stop_after_headers then
		return
	end
	if not mt.test_option(conn, SMFIP_NOEOH) then
		ok(mt.eoh(conn), "mt.eoh()")
		expect_continue("EOH", SMFIP_NR_EOH)
	end
	if not mt.test_option(conn, SMFIP_NOBODY) then
		ok(mt.bodystring(conn, m.body), "mt.bodystring()")
		expect_continue("body", SMFIP_NR_BODY)
	end
end

-- Our trace header, as inserted at the end of the last message; returns its value and ref.
local function check_trace_header(msg, queue_id)
	check(mt.eom_check(conn, MT_HDRINSERT, HEADER), "%s: %s was not inserted (SMFIR_INSHEADER)", msg, HEADER)
	local value = mt.getheader(conn, HEADER, 0)
	check(value ~= nil, "%s: mt.getheader(%s) returned nil", msg, HEADER)
	check(mt.getheader(conn, HEADER, 1) == nil, "%s: %s inserted more than once", msg, HEADER)
	check(not mt.eom_check(conn, MT_HDRADD, HEADER), "%s: %s appended (SMFIR_ADDHEADER) as well", msg, HEADER)
	-- At the very top of the message, where trace headers belong.
	check(mt.eom_check(conn, MT_HDRINSERT, HEADER, value, 0), "%s: %s not inserted at index 0", msg, HEADER)
	local flat = value:gsub("\r?\n[ \t]+", " ")
	if mt.test_option(conn, SMFIP_HDR_LEADSPC) then
		check(value:sub(1, 1) == " ", "%s: with SMFIP_HDR_LEADSPC the value must start with a space: %q", msg, value)
	end
	check(flat:find("ceerion-milter ", 1, true) ~= nil, "%s: unexpected %s value %q", msg, HEADER, value)
	check(flat:find(" on " .. HOSTNAME .. ";", 1, true) ~= nil, "%s: hostname missing in %q", msg, value)
	check(flat:find("verdict=accept", 1, true) ~= nil, "%s: verdict=accept missing in %q", msg, value)
	check(flat:find("queue-id=" .. queue_id, 1, true) ~= nil, "%s: queue-id=%s missing in %q", msg, queue_id, value)
	check(flat:find("evil", 1, true) == nil, "%s: the forged header's value leaked into %q", msg, value)
	local conn_id, n = flat:match("ref=(%x+)%.(%d+)")
	check(conn_id ~= nil, "%s: ref=CONN.N missing in %q", msg, value)
	return value, conn_id, tonumber(n)
end

local function main()
	local socket = os.getenv("MILTER_SOCKET")
	check(socket ~= nil and socket ~= "", "MILTER_SOCKET is not set (inet:PORT@HOST or unix:/path)")
	conn = mt.connect(socket)
	check(conn ~= nil, "mt.connect(%s) failed", socket)

	-- Option negotiation ----------------------------------------------------------------------

	local ALL_STEPS = SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOMAIL | SMFIP_NORCPT | SMFIP_NOBODY
		| SMFIP_NOHDRS | SMFIP_NOEOH | SMFIP_NR_HDR | SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_SKIP
		| SMFIP_RCPT_REJ | SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_RCPT | SMFIP_NR_DATA
		| SMFIP_NR_UNKN | SMFIP_NR_EOH | SMFIP_NR_BODY | SMFIP_HDR_LEADSPC
	local ALL_ACTIONS = SMFIF_ADDHDRS | SMFIF_CHGBODY | SMFIF_ADDRCPT | SMFIF_DELRCPT | SMFIF_CHGHDRS
		| SMFIF_QUARANTINE | SMFIF_CHGFROM | SMFIF_ADDRCPT_PAR | SMFIF_SETSYMLIST

	ok(mt.negotiate(conn, 6, ALL_STEPS, ALL_ACTIONS), "mt.negotiate()")
	check(mt.getreply(conn) == string.byte("O"), "option negotiation: no SMFIC_OPTNEG reply")

	-- The trace header needs these; without them the modifications would be dropped.
	check(mt.test_action(conn, SMFIF_ADDHDRS), "milter did not request SMFIF_ADDHDRS")
	check(mt.test_action(conn, SMFIF_CHGHDRS), "milter did not request SMFIF_CHGHDRS")
	-- The trace check reads headers, so the milter must not have switched them off.
	check(not mt.test_option(conn, SMFIP_NOHDRS), "milter negotiated SMFIP_NOHDRS but reads headers")

	local steps = {}
	for _, name in ipairs({ "SMFIP_NOCONNECT", "SMFIP_NOHELO", "SMFIP_NOMAIL", "SMFIP_NORCPT",
		"SMFIP_NOBODY", "SMFIP_NOHDRS", "SMFIP_NOEOH", "SMFIP_NODATA", "SMFIP_NOUNKNOWN", "SMFIP_SKIP",
		"SMFIP_NR_CONN", "SMFIP_NR_HELO", "SMFIP_NR_MAIL", "SMFIP_NR_RCPT", "SMFIP_NR_DATA",
		"SMFIP_NR_HDR", "SMFIP_NR_EOH", "SMFIP_NR_BODY", "SMFIP_NR_UNKN", "SMFIP_HDR_LEADSPC" }) do
		if mt.test_option(conn, _G[name]) then
			steps[#steps + 1] = name
		end
	end
	mt.echo("negotiated: " .. table.concat(steps, " "))

	-- Connection: IPv6 client, HELO -----------------------------------------------------------

	ok(mt.macro(conn, SMFIC_CONNECT, "j", "mx.example.org", "{daemon_name}", "smtpd",
		"{client_addr}", "2001:db8::25", "{client_name}", "mail.example.net"), "mt.macro(SMFIC_CONNECT)")
	-- miltertest sends family '6' for an address inet_pton(AF_INET6) accepts.
	ok(mt.conninfo(conn, "mail.example.net", "2001:db8::25"), "mt.conninfo()")
	expect_continue("connect", SMFIP_NR_CONN)

	ok(mt.macro(conn, SMFIC_HELO, "{tls_version}", "TLSv1.3", "{cipher}", "TLS_AES_256_GCM_SHA384"),
		"mt.macro(SMFIC_HELO)")
	ok(mt.helo(conn, "mail.example.net"), "mt.helo()")
	expect_continue("HELO", SMFIP_NR_HELO)

	-- Message 1: forged trace headers are deleted, ours is inserted ---------------------------

	send_message({
		mail_macros = { "i", "4XyZ1Q", "{auth_type}", "PLAIN", "{auth_authen}", "alice" },
		from = { "<alice@example.net>", "SIZE=512", "BODY=8BITMIME" },
		rcpts = { "<bob@example.org>", "<carol@example.org>" },
		headers = {
			{ "X-Ceerion-Milter", "ceerion-milter 9.9.9 on evil.example; verdict=accept; spam=no" },
			{ "From", "Alice <alice@example.net>" },
			{ "To", "Bob <bob@example.org>, carol@example.org" },
			{ "Subject", "interop test 1" },
			{ "Date", "Tue, 01 Apr 2025 10:00:00 +0000" },
			{ "Message-ID", "<interop-1@example.net>" },
			-- A second forged copy, spelled differently: header names compare case-insensitively.
			{ "x-ceerion-milter", "evil second copy" },
		},
		body = "Hello Bob,\r\n\r\nthis is message 1.\r\n",
	})
	ok(mt.eom(conn), "mt.eom() (message 1)")
	expect_reply(SMFIR_ACCEPT, "end of message 1")

	local _, conn_id, n1 = check_trace_header("message 1", "4XyZ1Q")
	-- Both forged copies deleted: CHGHEADER with an empty value, per-name indexes 1 and 2.
	check(mt.eom_check(conn, MT_HDRCHANGE, HEADER, ""), "message 1: forged %s not deleted (SMFIR_CHGHEADER)", HEADER)
	check(mt.eom_check(conn, MT_HDRDELETE, HEADER, 1), "message 1: forged %s #1 not deleted", HEADER)
	check(mt.eom_check(conn, MT_HDRDELETE, HEADER, 2), "message 1: forged %s #2 not deleted", HEADER)
	check(not mt.eom_check(conn, MT_HDRDELETE, HEADER, 3), "message 1: deleted a %s #3 that does not exist", HEADER)
	check(not mt.eom_check(conn, MT_HDRCHANGE, "Subject"), "message 1: Subject changed")
	check(not mt.eom_check(conn, MT_BODYCHANGE), "message 1: body replaced")
	check(not mt.eom_check(conn, MT_QUARANTINE), "message 1: quarantined")
	mt.echo(string.format("message 1 accepted, trace header inserted (ref %s.%d), forged copies deleted", conn_id, n1))

	-- Message 2: aborted after the headers; the connection must stay usable -------------------

	send_message({
		mail_macros = { "i", "5AbC2R" },
		from = { "<mallory@example.com>" },
		rcpts = { "<bob@example.org>" },
		headers = {
			{ "From", "mallory@example.com" },
			{ "X-Ceerion-Milter", "ceerion-milter forged on evil.example; verdict=accept" },
			{ "Subject", "interop test 2 (aborted)" },
		},
		stop_after_headers = true,
	})
	ok(mt.abort(conn), "mt.abort()")
	mt.echo("message 2 aborted after its headers")

	-- Message 3: clean, to completion on the same connection ----------------------------------

	send_message({
		mail_macros = { "i", "6DeF3S" },
		from = { "<dave@example.net>" },
		rcpts = { "<erin@example.org>" },
		headers = {
			{ "From", "dave@example.net" },
			{ "To", "erin@example.org" },
			{ "Subject", "interop test 3" },
			{ "Message-ID", "<interop-3@example.net>" },
		},
		body = "message 3\r\n",
	})
	ok(mt.eom(conn), "mt.eom() (message 3)")
	expect_reply(SMFIR_ACCEPT, "end of message 3")

	local value3, conn_id3, n3 = check_trace_header("message 3", "6DeF3S")
	check(value3:find("5AbC2R", 1, true) == nil, "message 3: the aborted message's queue id leaked: %q", value3)
	check(conn_id3 == conn_id, "message 3: ref %s is not from the same connection as message 1 (%s)", conn_id3, conn_id)
	check(n3 == n1 + 2, "message 3: ref number %d, expected %d (message 2 was started, then aborted)", n3, n1 + 2)
	-- Nothing forged this time, so nothing to delete; and mt.mailfrom() cleared message 1's requests.
	check(not mt.eom_check(conn, MT_HDRCHANGE), "message 3: a header was changed or deleted")
	mt.echo(string.format("message 3 accepted on the same connection (ref %s.%d)", conn_id3, n3))

	ok(mt.disconnect(conn), "mt.disconnect()")
	mt.echo("interop session complete")
end

-- miltertest exits 1 when the script raises an error but (in this build) does not print the
-- message, so print it, with a traceback, before re-raising.
local succeeded, err = xpcall(main, debug.traceback)
if not succeeded then
	io.stderr:write("FAILED: ", tostring(err), "\n")
	error(err, 0)
end
