/**
 * The benchmark's realistic message: 19 header fields (the DKIM signature makes 20) and a plain
 * text body of the size asked for, different per variant so no cache can shortcut it.
 */
const LINES = [
  'Please find the quarterly figures for the northern region below. The numbers',
  'are preliminary and will be confirmed once the audit has closed; until then',
  'treat them as estimates. Revenue grew in every product line except hardware,',
  'where the supply problems of the second quarter are still visible. Margins',
  'held up better than planned because freight costs came down in the autumn.',
  'Headcount is flat. Two open positions in support were filled in October and',
  'one engineer left. Training budget is 80% spent, travel 64%.',
  '',
];

/** Plain text of about `bytes` bytes, lines of at most 76 characters. */
export function textBody(variant: number, bytes: number): string {
  const out: string[] = [`Hello Bob,`, ``, `this is report ${variant}.`, ``];
  let size = 40;
  for (let i = 0; size < bytes; i++) {
    const line = i % LINES.length === LINES.length - 1 ? `-- section ${variant}.${i / LINES.length + 1} --` : LINES[i % LINES.length]!;
    out.push(line);
    size += line.length + 2;
  }
  out.push('', 'Regards,', 'Alice');
  return out.join('\r\n') + '\r\n';
}

/** 19 header fields from alice@DOMAIN, then the body (CRLF throughout). */
export function reportMessage(domain: string, variant: number, body: string): string {
  const h = [
    `Received: from laptop.sender.example (laptop.sender.example [198.51.100.7])\r\n\tby mail.sender.example (Postfix) with ESMTPSA id 4Xk${variant}Q\r\n\tfor <bob@example.org>; Sat, 21 Nov 2026 10:00:00 +0000`,
    `Received: from localhost (localhost [127.0.0.1])\r\n\tby laptop.sender.example with ESMTP; Sat, 21 Nov 2026 09:59:59 +0000`,
    `From: Alice Sender <alice@${domain}>`,
    `To: Bob Example <bob@example.org>`,
    `Cc: Carol Example <carol@example.org>`,
    `Reply-To: Alice Sender <alice@${domain}>`,
    `Subject: Quarterly figures, northern region (${variant})`,
    `Date: Sat, 21 Nov 2026 10:00:00 +0000`,
    `Message-ID: <report-${variant}.${Date.now().toString(36)}@${domain}>`,
    `In-Reply-To: <request-${variant}@example.org>`,
    `References: <request-${variant}@example.org>`,
    `MIME-Version: 1.0`,
    `Content-Type: text/plain; charset=utf-8; format=flowed`,
    `Content-Transfer-Encoding: 7bit`,
    `List-Id: Reports <reports.${domain}>`,
    `List-Unsubscribe: <mailto:reports-leave@${domain}>`,
    `X-Mailer: Bench Mailer 1.0`,
    `Thread-Topic: Quarterly figures`,
    `Content-Language: en-GB`,
  ];
  return `${h.join('\r\n')}\r\n\r\n${body}`;
}
