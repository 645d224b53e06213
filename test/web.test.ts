/**
 * The web page in a real browser: Debian's chromium driven by playwright-core. The page is built
 * with Vite into a temporary directory and served by the same code as `podwalk serve`, on
 * 127.0.0.1 with an ephemeral port. Screenshots go to test-artifacts/web/.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { build } from 'vite';
import { run } from '../src/cli/app.ts';
import { serveWeb, type Served } from '../src/cli/serve.ts';
import { loadDumps } from '../src/collect/load.ts';
import { loadCluster } from '../src/cluster/load.ts';
import type { CniMode } from '../src/cluster/spec.ts';
import type { Cluster } from '../src/cni/build.ts';
import { prepareCluster, runCommand } from '../src/tools/index.ts';
import { walk, type Walk, type WalkRequest } from '../src/trace/walk.ts';
import { stepDetail, stepEntry, stepTable } from '../src/render/step.ts';
import { dispositionLine } from '../src/render/text.ts';

const CHROMIUM = '/usr/bin/chromium';
const REPO = resolve(fileURLToPath(new URL('..', import.meta.url)));
const ARTIFACTS = join(REPO, 'test-artifacts', 'web');
const skip = existsSync(CHROMIUM)
  ? undefined
  : `${CHROMIUM} is missing: install Debian's chromium (apt-get install chromium) to run the browser tests`;

let served: Served | undefined;
let ctx: BrowserContext | undefined;
let page: Page;
const dirs: string[] = [];

async function shot(name: string): Promise<void> {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`) });
}

/** the 0-based index of the current step, from the step counter "step N / M" */
async function position(p: Page = page): Promise<{ n: number; total: number }> {
  const m = /step (\d+) \/ (\d+)/.exec(await p.getByTestId('pos').innerText())!;
  return { n: Number(m[1]), total: Number(m[2]) };
}

async function runInConsole(netns: string, command: string): Promise<void> {
  await page.getByLabel('network namespace').selectOption(netns);
  await page.getByLabel('command').fill(command);
  await page.getByLabel('command').press('Enter');
}

/** the flow walked by the core as the page walks it (the whole exchange), on the cluster file in `mode` */
function coreWalk(file: string, mode: CniMode, req: WalkRequest): { c: Cluster; w: Walk } {
  const spec = loadCluster(readFileSync(file, 'utf8'), file);
  const c = prepareCluster(spec, mode, []);
  return { c, w: walk(c, req, { exchange: true }) };
}

/** the text lines of a box in the picture, in order */
function boxLines(id: string): Promise<string[]> {
  return page
    .getByTestId('topology')
    .locator(`[data-id="${id}"] > text`)
    .evaluateAll((ts) => ts.map((t) => (t.textContent ?? '').trim()));
}

/** a Service's endpoint lines: "BOX READY", sorted */
async function endpointLines(svc: string): Promise<string[]> {
  const ls = await page
    .getByTestId('topology')
    .locator(`line.endpoint[data-svc="${svc}"]`)
    .evaluateAll((xs) => xs.map((l) => `${l.getAttribute('data-endpoint')} ${l.getAttribute('data-ready')}`));
  return ls.sort();
}

/** every box's text fits inside its rectangle, as the browser measures it */
async function textFits(): Promise<void> {
  const over = await page
    .getByTestId('topology')
    .locator('g.box')
    .evaluateAll((gs) =>
      gs.flatMap((g) => {
        const r = g.querySelector(':scope > rect')!;
        const right = Number(r.getAttribute('x')) + Number(r.getAttribute('width'));
        return [...g.querySelectorAll(':scope > text')].flatMap((t) => {
          const measured = t as unknown as { getComputedTextLength(): number };
          const end = Number(t.getAttribute('x')) + measured.getComputedTextLength();
          return end > right - 2
            ? [`${g.getAttribute('data-id')}: "${t.textContent}" ends at ${end.toFixed(1)}, box at ${right}`]
            : [];
        });
      }),
    );
  assert.deepEqual(over, []);
}

/** a test that skips with the reason when there is no browser */
function it(name: string, body: () => Promise<void>): void {
  test(name, async (t) => {
    if (skip) return t.skip(skip);
    await body();
  });
}

let built: Promise<string> | undefined;

/** the page, built once with Vite into a temporary directory */
function pageBuild(): Promise<string> {
  built ??= (async () => {
    const out = mkdtempSync(join(tmpdir(), 'podwalk-web-'));
    dirs.push(out);
    mkdirSync(ARTIFACTS, { recursive: true });
    await build({
      configFile: join(REPO, 'vite.config.ts'),
      root: join(REPO, 'web'),
      build: { outDir: out, emptyOutDir: true },
      logLevel: 'silent',
    });
    return out;
  })();
  return built;
}

/** Debian's chromium, headless, with a profile of its own */
function launch(): Promise<BrowserContext> {
  const profile = mkdtempSync(join(tmpdir(), 'podwalk-chromium-'));
  dirs.push(profile);
  return chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
    viewport: { width: 1280, height: 800 },
  });
}

after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('web page in chromium', () => {
  before(async () => {
    if (skip) return;
    const out = await pageBuild();
    served = await serveWeb({ root: out, port: 0 });
    ctx = await launch();
    page = ctx.pages()[0] ?? (await ctx.newPage());
    page.setDefaultTimeout(10_000);
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('console', (m) => void (m.type() === 'error' && errors.push(m.text())));
    await page.goto(served.url);
    await page.getByTestId('steps').waitFor();
    assert.deepEqual(errors, [], 'the page loads without errors');
  });

  after(async () => {
    await ctx?.close();
    await served?.close();
  });

  it('draws the seed cluster: nodes with eth0 and address, pods, veths, cni0, flannel.1, lan0', async () => {
    const svg = page.getByTestId('topology');
    for (const id of ['node1', 'node2', 'node3', 'pod-a', 'pod-b', 'pod-c', 'pod-d', 'router'])
      assert.equal(await svg.locator(`[data-id="${id}"]`).count(), 1, id);
    assert.match(
      (await svg.locator('[data-id="node1|eth0"]').textContent()) ?? '',
      /eth0.*192\.168\.1\.10\/24/,
    );
    assert.match((await svg.locator('[data-id="pod-c|eth0"]').textContent()) ?? '', /10\.244\.1\.5/);
    for (const id of ['node1|veth-pod-a', 'node1|cni0', 'node1|flannel.1', 'node2|flannel.1'])
      assert.equal(await svg.locator(`[data-id="${id}"]`).count(), 1, id);
    assert.match(await svg.innerHTML(), /lan0 192\.168\.1\.0\/24/);
  });

  it('Pod A → Pod C in flannel-vxlan: step through, step list, header boxes (VNI 1, UDP 4789, 50 B)', async () => {
    await page.locator('select[name=from]').selectOption('pod-a');
    await page.locator('select[name=to]').selectOption('pod-c');
    await page.locator('select[name=proto]').selectOption('tcp');
    await page.locator('select[name=mode]').selectOption('flannel-vxlan');
    assert.match(await page.getByTestId('disposition').innerText(), /^delivered to pod-c tcp\/8080$/);
    await shot('01-seed-walk-start');

    const steps = page.getByTestId('steps').locator('li');
    const total = await steps.count();
    assert.equal((await position()).total, total);
    assert.ok(total > 20, `${total} steps`);
    // the step list names the layer, the decision and the table entry that decided
    const routeStep = steps.filter({ hasText: 'dev flannel.1 onlink' }).first();
    assert.match(
      await routeStep.innerText(),
      /L3\s+route[\s\S]*main: 10\.244\.1\.0\/24 via 10\.244\.1\.0 dev flannel\.1 onlink/,
    );
    assert.match(
      await steps.filter({ hasText: 'VXLAN vni 1' }).first().innerText(),
      /fdb flannel\.1: 5a:2b:3c:4d:5e:6f dst 192\.168\.1\.11 self permanent/,
    );

    // step with the keyboard until the VXLAN frame leaves node1's eth0
    // leave the form: the keys step the walk (the page ignores them while a field has the focus)
    await page.locator('select[name=mode]').blur();
    await page.keyboard.press('Home');
    assert.equal((await position()).n, 1);
    const texts = await steps.allInnerTexts();
    const target = texts.findIndex((t) => /xmit[\s\S]*node1 eth0[\s\S]*VXLAN vni 1/.test(t));
    assert.ok(target > 0, 'a VXLAN frame out of node1 eth0');
    for (let i = 0; i < target; i++) {
      await page.keyboard.press('ArrowRight');
      if (i === Math.floor(target / 2)) await shot('02-seed-walk-halfway');
    }
    assert.equal((await position()).n, target + 1);
    assert.equal(await steps.nth(target).getAttribute('aria-current'), 'step');
    await page.keyboard.press('ArrowLeft');
    assert.equal((await position()).n, target);
    await page.keyboard.press('ArrowRight');

    const frame = page.getByTestId('frame');
    const boxes = await frame
      .locator('button.hdr')
      .evaluateAll((bs) =>
        bs.map((b) => `${b.getAttribute('data-layer')} ${b.querySelector('.bytes')?.textContent}`),
      );
    assert.deepEqual(boxes, [
      'Ethernet 14 B',
      'IPv4 20 B',
      'UDP 8 B',
      'VXLAN 8 B',
      'Ethernet 14 B',
      'IPv4 20 B',
      'TCP 40 B',
    ]);
    assert.match(await frame.locator('[data-layer=VXLAN]').innerText(), /vni 1$/);
    assert.match(await frame.locator('[data-layer=UDP]').innerText(), /→ 4789 /);
    assert.equal(await page.getByTestId('overhead').innerText(), 'encapsulation overhead 50 B');
    assert.equal(await frame.locator('.encap').count(), 1, 'the inner frame is drawn inside');

    // the hex view highlights the selected header: VXLAN's 8 bytes, I flag and VNI 1
    await frame.locator('[data-layer=VXLAN]').click();
    const sel = await page.getByTestId('hex').locator('.b.sel').allInnerTexts();
    assert.deepEqual(sel, ['08', '00', '00', '00', '00', '00', '01', '00']);
    await shot('03-seed-vxlan-frame');

    await page.keyboard.press('End');
    const last = await position();
    assert.equal(last.n, last.total);
    await shot('04-seed-walk-delivered');
  });

  it('console: ip route del 10.244.1.0/24 on node1 re-runs the walk, which now drops with no-route', async () => {
    await runInConsole('node1', 'ip route');
    const out = page.getByTestId('console-out');
    assert.match(await out.innerText(), /10\.244\.1\.0\/24 via 10\.244\.1\.0 dev flannel\.1 onlink/);
    assert.doesNotMatch(await out.innerText(), /applied/, 'a command that changes nothing is not applied');
    await runInConsole('node1', 'tcpdump -i flannel.1 -nn');
    assert.match(await out.innerText(), /IP 10\.244\.0\.5\.\d+ > 10\.244\.1\.5\.8080: Flags \[S\]/);

    await runInConsole('node1', 'ip route del 10.244.1.0/24');
    await page.getByTestId('runs').waitFor();
    assert.match(await out.innerText(), /applied: the walk ran again/);
    // node1 still has its default route (via 192.168.1.1, as in the article), so the packet leaves
    // by eth0 and the LAN's router, which has no route to pod networks, drops it
    assert.match(
      await page.getByTestId('disposition').innerText(),
      /^DROPPED \(no-route\) in router at eth0: no route to 10\.244\.1\.5/,
    );
    // the page shows where the new walk ends
    assert.equal(
      await page.getByTestId('steps').locator('li[aria-current=step]').getAttribute('data-kind'),
      'drop',
    );
    await shot('05-route-deleted-drop-at-router');
    // the drop explained: the router's missing route comes from node1 sending the pod CIDR to its default route
    const why = page.getByTestId('why');
    await why.locator('summary').click();
    assert.match(await why.innerText(), /node1 has no route for 10\.244\.1\.0\/24 \(node2's pods\)/);
    assert.match(await why.innerText(), /IpExtInNoRoutes \+1/);

    // without the default route too, node1 itself has no route: the drop is at node1
    await runInConsole('node1', 'ip route del default');
    assert.match(await page.getByTestId('disposition').innerText(), /^DROPPED \(no-route\) in node1\b/);
    await page.keyboard.press('Escape'); // leave the console: the keys step the walk again
    await page.keyboard.press('End');
    assert.equal(await page.getByTestId('topology').locator('.box.dropped').count(), 1);
    const dropped = await page.getByTestId('topology').locator('.box.dropped').getAttribute('data-id');
    assert.match(dropped ?? '', /^node1/);
    const drop = page.getByTestId('steps').locator('li[data-kind=drop]');
    assert.equal(await drop.count(), 1);
    assert.match(await drop.innerText(), /L3\s+drop\s+node1[\s\S]*no route to 10\.244\.1\.5/);
    await shot('06-no-route-at-node1');

    // the URL carries cluster, flow, commands and step: a fresh load shows the same drop
    const url = page.url();
    assert.match(url, /run=node1%3A\+ip\+route\+del\+10\.244\.1\.0%2F24/);
    const again = await ctx!.newPage();
    await again.goto(url);
    await again.getByTestId('steps').waitFor();
    assert.equal(
      await again.getByTestId('disposition').innerText(),
      await page.getByTestId('disposition').innerText(),
    );
    assert.equal(await again.getByTestId('pos').innerText(), await page.getByTestId('pos').innerText());
    await again.close();

    await page.getByRole('button', { name: 'reset the cluster' }).click();
    assert.match(await page.getByTestId('disposition').innerText(), /^delivered to pod-c/);
  });

  it('switching mode keeps the flow and shows both modes side by side', async () => {
    await page.locator('select[name=mode]').selectOption('calico-ipip');
    assert.equal(await page.locator('select[name=from]').inputValue(), 'pod-a');
    assert.equal(await page.locator('select[name=to]').inputValue(), 'pod-c');
    const cmp = page.getByTestId('compare');
    const text = await cmp.innerText();
    assert.match(text, /calico-ipip[\s\S]*pod MTU\s+1480[\s\S]*IPinIP[\s\S]*20 B/);
    assert.match(text, /flannel-vxlan[\s\S]*pod MTU\s+1450[\s\S]*VXLAN \(UDP 4789\)[\s\S]*50 B/);
    assert.match(text, /tunl0/);
    assert.match(text, /flannel\.1/);
    await cmp.scrollIntoViewIfNeeded();
    await shot('07-modes-side-by-side');
    await page.locator('select[name=mode]').selectOption('flannel-vxlan');
  });

  it('pcap download of an interface', async () => {
    const [dl] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('button', { name: 'node1-eth0.pcap' }).click(),
    ]);
    const file = join(dirs[0], 'dl.pcap');
    await dl.saveAs(file);
    const { readFileSync } = await import('node:fs');
    const bytes = readFileSync(file);
    assert.equal(bytes.readUInt32LE(0), 0xa1b2c3d4, 'pcap magic');
    assert.ok(bytes.length > 24 + 16);
  });

  it('a shipped scenario loads with its flow, drops where doctor says, and explains why', async () => {
    await page.getByLabel('load a scenario').selectOption('vxlan-fdb-missing');
    assert.equal(await page.locator('select[name=from]').inputValue(), 'pod-a');
    assert.equal(await page.locator('select[name=to]').inputValue(), 'pod-c');
    assert.match(
      await page.getByTestId('disposition').innerText(),
      /^DROPPED \(vxlan-fdb-miss\) in node1 at flannel\.1/,
    );
    const why = page.getByTestId('why');
    await why.locator('summary').click();
    assert.match(await why.innerText(), /flanneld writes `5a:2b:3c:4d:5e:6f dst <node2's IP>`/);
    await shot('09-scenario-vxlan-fdb-missing');
    // doctor on the page: the same report as podwalk doctor --scenario vxlan-fdb-missing
    await page.getByRole('button', { name: 'diagnose this flow' }).click();
    const report = await page.getByTestId('doctor').innerText();
    assert.match(report, /^why: vxlan-fdb-miss in node1 at flannel\.1$/m);
    assert.match(report, /✗ vxlan-route-without-fdb/);
    assert.match(report, /verdict: problems found/);
    await page.getByTestId('doctor').scrollIntoViewIfNeeded();
    await shot('10-doctor');
    await page.getByLabel('load a scenario').selectOption('');
    assert.match(await page.getByTestId('disposition').innerText(), /^delivered to pod-c/);
  });

  it("the reachability matrix: podwalk matrix's table, and a cell opens its walk", async () => {
    await page.getByLabel('load a scenario').selectOption('policy-blocks-dns');
    await page.locator('select[name=matrix-proto]').selectOption('udp');
    await page.locator('input[name=matrix-port]').fill('53');
    await page.getByRole('button', { name: 'compute the matrix' }).click();
    const table = page.getByTestId('matrix');
    const rows = await table
      .locator('tr')
      .evaluateAll((trs) => trs.map((tr) => [...tr.children].map((c) => c.textContent).join('\t')));
    // the same table as `podwalk matrix --scenario policy-blocks-dns --proto udp --port 53`
    assert.deepEqual(rows, [
      '-\tshop/web\tshop/cart\tkube-system/coredns',
      'shop/web\tX\tX\tX',
      'shop/cart\tX\tX\t.',
      'kube-system/coredns\tX\tX\t.',
    ]);
    assert.match(
      await page.getByTestId('matrix-summary').innerText(),
      /^udp\/53 in calico-ipip: 9 cells, 7 blocked; 9 walks, one per group of pods the model cannot tell apart \(3 groups\)/,
    );
    const webDns = table.locator('button[data-from=web][data-to=coredns]');
    assert.match(
      (await webDns.getAttribute('title')) ?? '',
      /^web → coredns: blocked: DROPPED \(filtered\) in node1/,
    );
    await table.scrollIntoViewIfNeeded();
    await shot('11-matrix');

    // a cell opens its walk: the page's flow becomes that cell's, walked on the page's cluster
    await webDns.click();
    assert.equal(await page.locator('select[name=from]').inputValue(), 'web');
    assert.equal(await page.locator('select[name=to]').inputValue(), 'coredns');
    assert.equal(await page.locator('select[name=proto]').inputValue(), 'udp');
    assert.equal(await page.locator('input[name=port]').inputValue(), '53');
    assert.match(
      await page.getByTestId('disposition').innerText(),
      // calico-node's layout: the FORWARD hook sees the packet come in on web's cali device, and
      // felix's egress chain of web (cali-fw- and cali + sha1("shop.web")[:11]) drops it
      /^DROPPED \(filtered\) in node1 at cali551b05c3e54: dropped by rule cali-fw-cali551b05c3e54 #\d+: .*"Drop if no policies passed packet"/,
    );
    assert.match((await webDns.getAttribute('class')) ?? '', /\bcurrent\b/);
    await table.locator('button[data-from=cart][data-to=coredns]').click();
    assert.match(await page.getByTestId('disposition').innerText(), /^delivered to coredns udp\/53$/);

    // selectors as kubectl -l takes them; a bad one is one line
    await page.locator('select[name=matrix-proto]').selectOption('tcp');
    await page.locator('input[name=matrix-port]').fill('8080');
    await page.locator('input[name=matrix-from]').fill('metadata.namespace=shop');
    await page.locator('input[name=matrix-to]').fill('app in (cart,web)');
    await page.getByRole('button', { name: 'compute the matrix' }).click();
    assert.deepEqual(
      await table
        .locator('tr')
        .evaluateAll((trs) => trs.map((tr) => [...tr.children].map((c) => c.textContent).join(' '))),
      ['- shop/web shop/cart', 'shop/web X .', 'shop/cart X .'],
    );
    await page.locator('input[name=matrix-from]').fill('app in (web');
    await page.getByRole('button', { name: 'compute the matrix' }).click();
    assert.equal(
      await page.getByTestId('matrix-error').innerText(),
      'podwalk: expected "," or ")" in the values of app at the end',
    );
    await page.getByLabel('load a scenario').selectOption('');
    assert.match(await page.getByTestId('disposition').innerText(), /^delivered to pod-c/);
  });

  it('Services: drawn with their endpoints; svc/web:80 walks through the DNAT, the chosen endpoint and the un-NAT', async () => {
    const file = join(REPO, 'examples', 'services.yaml');
    await page.getByLabel('load a cluster YAML file').setInputFiles(file);
    const svg = page.getByTestId('topology');
    await svg.locator('[data-id="svc:default/web"]').waitFor();
    // each Service: name, namespace, type and ClusterIP, ports as kubectl prints PORT(S)
    assert.deepEqual(await boxLines('svc:default/web'), [
      'web default',
      'ClusterIP 10.96.0.2',
      '80/TCP (http)',
      '8080/UDP (udp)',
    ]);
    assert.deepEqual(await boxLines('svc:default/web-np'), [
      'web-np default',
      'NodePort 10.96.0.3',
      '80:30080/TCP',
    ]);
    assert.deepEqual(await boxLines('svc:default/dns'), [
      'dns default',
      'ClusterIP 10.96.0.10',
      '53/UDP (dns)',
    ]);
    // a line to every endpoint of the EndpointSlices: pod-d says ready: false
    assert.deepEqual(await endpointLines('svc:default/web'), ['pod-b true', 'pod-c true', 'pod-d false']);
    assert.deepEqual(await endpointLines('svc:default/dns'), ['pod-d false']);
    assert.equal(await svg.locator('line.endpoint.notready').count(), 3);

    // the Service as the destination, as `podwalk trace pod-a svc/web:80` takes it
    await page.locator('select[name=from]').selectOption('pod-a');
    await page.locator('select[name=to]').selectOption('svc/web:80/tcp');
    assert.equal(await page.locator('input[name=port]').inputValue(), '80');
    assert.deepEqual(await page.locator('select[name=endpoint] option').allInnerTexts(), [
      "(kube-proxy's draw)",
      'pod-b 10.244.0.6:8080',
      'pod-c 10.244.1.5:8080',
    ]);
    await page.locator('select[name=endpoint]').selectOption('pod-c');
    assert.match(await page.getByTestId('disposition').innerText(), /^delivered to pod-c tcp\/8080$/);

    // the same steps, rendered by the same functions, as the CLI's walk of the same flow
    const { c, w } = coreWalk(file, 'flannel-vxlan', {
      from: 'pod-a',
      to: 'svc/web',
      proto: 'tcp',
      port: 80,
      endpoint: 'pod-c',
    });
    const dnat = w.request.steps.findIndex((s) => s.ev.type === 'netfilter' && s.ev.decision.nat === 'DNAT');
    const rule = w.request.steps[dnat];
    assert.match(
      stepDetail(rule),
      /^nat PREROUTING: DNAT \(PREROUTING#1 → KUBE-SERVICES#\d+ → KUBE-SVC-[A-Z2-7]{16}#\d+ → KUBE-SEP-[A-Z2-7]{16}#\d+\); random choice KUBE-SVC-[A-Z2-7]{16}#\d+, probability 0\.5000$/,
    );
    const steps = page.getByTestId('steps').locator('li');
    const shown = steps.nth(dnat);
    assert.equal(await shown.locator('.detail').innerText(), stepDetail(rule));
    assert.equal(await shown.locator('.entry').innerText(), `${stepTable(rule)}: ${stepEntry(rule)}`);
    assert.match(await shown.locator('.entry').innerText(), /-j DNAT --to-destination 10\.244\.1\.5:8080$/);
    const setup = w.request.steps[dnat + 1];
    assert.equal(setup.ev.type, 'nat-setup');
    assert.equal(
      await steps
        .nth(dnat + 1)
        .locator('.detail')
        .innerText(),
      stepDetail(setup),
    );

    // the Service and the endpoint taken light up once the DNAT is behind the walk
    await page.locator('select[name=endpoint]').blur();
    await page.keyboard.press('Home');
    assert.equal(await svg.locator('.box.walked').count(), 0, 'before the DNAT');
    await steps.nth(dnat + 1).click();
    assert.equal(await svg.locator('.box.walked').getAttribute('data-id'), 'svc:default/web');
    assert.deepEqual(
      await svg
        .locator('line.endpoint.taken')
        .evaluateAll((ls) =>
          ls.map((l) => `${l.getAttribute('data-svc')} ${l.getAttribute('data-endpoint')}`),
        ),
      ['svc:default/web pod-c'],
    );
    await shot('14-service-dnat');

    // the answer: conntrack un-NATs its source back to the Service's address
    await page.getByRole('tab', { name: 'SYN-ACK' }).click();
    const unnat = w.reply!.steps.findIndex((s) => s.ev.type === 'nat-rewrite' && s.ev.manip === 'src');
    assert.ok(unnat > 0);
    assert.match(
      stepDetail(w.reply!.steps[unnat]),
      /source 10\.244\.1\.5:8080 → 10\.96\.0\.2:80 \(from the conntrack entry\)/,
    );
    assert.equal(await steps.nth(unnat).locator('.detail').innerText(), stepDetail(w.reply!.steps[unnat]));
    await page.keyboard.press('End');
    assert.equal(await svg.locator('.box.walked').getAttribute('data-id'), 'svc:default/web');
    await shot('15-service-reply-unnat');

    // the console: iptables-save -t nat and conntrack -L as `podwalk exec --walk` prints them
    for (const command of ['iptables-save -t nat', 'conntrack -L']) {
      await runInConsole('node1', command);
      const last = page.getByTestId('console-out').locator('.entry').last();
      assert.equal(await last.locator('.cmd').innerText(), `node1# ${command}`);
      const want = runCommand(c, 'node1', command);
      assert.equal(want.code, 0);
      assert.equal(await last.locator('pre').first().textContent(), want.stdout);
    }
    await page.keyboard.press('Escape');

    // the URL keeps the Service and the endpoint
    assert.match(page.url(), /to=svc%2Fweb&proto=tcp&port=80&ep=pod-c/);
    // the flow's own draw: delivered to whichever endpoint the flow's hash takes, the same as the CLI
    await page.locator('select[name=endpoint]').selectOption('');
    const own = coreWalk(file, 'flannel-vxlan', { from: 'pod-a', to: 'svc/web', proto: 'tcp', port: 80 });
    assert.equal(
      await page.getByTestId('disposition').innerText(),
      dispositionLine(own.w.request.disposition),
    );
    // and the console prints what `podwalk exec node1 --walk 'pod-a svc/web:80' -- CMD` prints
    for (const command of ['conntrack -L', 'iptables-save -t nat']) {
      await runInConsole('node1', command);
      const out: string[] = [];
      const err: string[] = [];
      const argv = [
        'exec',
        'node1',
        '--cluster',
        file,
        '--walk',
        'pod-a svc/web:80',
        '--',
        ...command.split(' '),
      ];
      const code = await run(argv, {
        out: (x) => out.push(x),
        err: (x) => err.push(x),
        readFile: (f) => readFileSync(f, 'utf8'),
        openDir: () => () => undefined,
        env: {},
        isTTY: false,
      });
      assert.equal(code, 0, err.join('\n'));
      const last = page.getByTestId('console-out').locator('.entry').last();
      const shown = async (sel: string) =>
        (await last.locator(sel).count()) ? ((await last.locator(sel).textContent()) ?? '').trimEnd() : '';
      assert.equal(await shown('pre:not(.stderr)'), out.join('\n').trimEnd());
      assert.equal(await shown('pre.stderr'), err.join('\n').trimEnd());
    }
    await page.keyboard.press('Escape');
    await textFits();
  });

  it("Services from outside: the external host drawn on the underlay, NODE_IP:NODEPORT walked from it; Calico's own layout", async () => {
    const file = join(REPO, 'test', 'fixtures', 'services-external.yaml');
    await page.getByLabel('load a cluster YAML file').setInputFiles(file);
    const svg = page.getByTestId('topology');
    await svg.locator('[data-id="client"]').waitFor();
    assert.match(
      (await svg.locator('[data-id="client|eth0"]').textContent()) ?? '',
      /eth0 192\.168\.1\.100\/24/,
    );
    assert.deepEqual(await boxLines('svc:prod/api'), [
      'api prod',
      'LoadBalancer 10.100.0.3',
      '9000:31000/TCP (tcp)',
      '9000:31000/UDP (udp)',
      'ingress 203.0.113.10',
      'externalTrafficPolicy Local',
    ]);
    // the hand-written EndpointSlice: the client host, web-2, and 10.244.2.2 (web-3's address) not ready
    assert.deepEqual(await endpointLines('svc:default/manual'), ['client true', 'web-2 true', 'web-3 false']);
    // calicoLayout: bridge keeps cni0
    assert.equal(await svg.locator('[data-id="node1|cni0"]').count(), 1);
    assert.equal(await svg.locator('.box.routing').count(), 0);

    await page.locator('select[name=from]').selectOption('client');
    await page.locator('select[name=to]').selectOption('192.168.1.11:30080/tcp');
    await page.locator('select[name=endpoint]').selectOption('web-3');
    assert.match(await page.getByTestId('disposition').innerText(), /^delivered to web-3 tcp\/8080$/);
    const { w } = coreWalk(file, 'calico-bgp', {
      from: 'client',
      to: '192.168.1.11',
      proto: 'tcp',
      port: 30080,
      endpoint: 'web-3',
    });
    const dnat = w.request.steps.findIndex((s) => s.ev.type === 'netfilter' && s.ev.decision.nat === 'DNAT');
    assert.match(
      stepDetail(w.request.steps[dnat]),
      /KUBE-NODEPORTS#\d+ → (KUBE-EXT-[A-Z2-7]{16})#1 → KUBE-MARK-MASQ#1 → \1#2 → KUBE-SVC-[A-Z2-7]{16}#\d+ → KUBE-SEP-[A-Z2-7]{16}#\d+\); random choice KUBE-SVC-[A-Z2-7]{16}#\d+, probability 0\.3333$/,
    );
    const steps = page.getByTestId('steps').locator('li');
    assert.equal(await steps.nth(dnat).locator('.detail').innerText(), stepDetail(w.request.steps[dnat]));
    await page.locator('select[name=endpoint]').blur();
    await page.keyboard.press('End');
    assert.equal(await svg.locator('.box.walked').getAttribute('data-id'), 'svc:default/web');
    assert.equal(await svg.locator('line.endpoint.taken').getAttribute('data-endpoint'), 'web-3');
    // the packet's path starts in the client (its socket), leaves by its eth0, and crosses lan0 by its port
    const points = ((await svg.locator('polyline.path').getAttribute('points')) ?? '').split(' ');
    const middle = async (id: string) => {
      const r = svg.locator(`[data-id="${id}"] > rect`);
      const [x, y, wd, ht] = await Promise.all(
        ['x', 'y', 'width', 'height'].map(async (a) => Number(await r.getAttribute(a))),
      );
      return `${x + wd / 2},${y + ht / 2}`;
    };
    assert.deepEqual(points.slice(0, 2), [await middle('client'), await middle('client|eth0')]);
    await shot('16-nodeport-from-external-host');
    await textFits();

    // Calico's own layout (the default of the calico-* modes): cali* veths routed by the node, no cni0
    // (examples/services.yaml, shipped in the scenario picker)
    await page.getByLabel('load a scenario').selectOption('example:services');
    assert.equal(await page.locator('select[name=mode]').inputValue(), 'flannel-vxlan');
    await svg.locator('[data-id="svc:default/web-np"]').waitFor();
    await page.locator('select[name=mode]').selectOption('calico-ipip');
    await svg.locator('[data-id="node1#routing"]').waitFor();
    assert.equal(await svg.locator('[data-id="node1|cni0"]').count(), 0);
    const calis = await svg
      .locator('.box.dev')
      .evaluateAll((bs) => bs.map((b) => b.getAttribute('data-id')).filter((id) => /\|cali/.test(id ?? '')));
    assert.equal(calis.length, 4, calis.join(' '));
    for (const id of calis) assert.match(id!, /^node\d\|cali[0-9a-f]{11}$/);
    assert.equal(await svg.locator('[data-id="node1|tunl0"]').count(), 1);
    await page.locator('select[name=to]').selectOption('svc/web:80/tcp');
    await page.locator('select[name=endpoint]').selectOption('pod-c');
    assert.match(await page.getByTestId('disposition').innerText(), /^delivered to pod-c tcp\/8080$/);
    await page.locator('select[name=endpoint]').blur();
    await page.keyboard.press('End');
    assert.equal(await svg.locator('line.endpoint.taken').getAttribute('data-endpoint'), 'pod-c');
    await shot('17-calico-layout-service');
    await textFits();
    await page.getByLabel('load a scenario').selectOption('');
    assert.match(await page.getByTestId('disposition').innerText(), /^delivered to pod-c/);
  });

  it('readable at phone width', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.getByTestId('steps').waitFor();
    const overflow = Number(await page.evaluate('document.documentElement.scrollWidth'));
    assert.ok(overflow <= 390, `page is ${overflow}px wide at a 390px viewport`);
    await shot('08-phone-width');
    // the long destination choices of a cluster with Services (node ports, load balancers) too
    await page
      .getByLabel('load a cluster YAML file')
      .setInputFiles(join(REPO, 'test', 'fixtures', 'services-external.yaml'));
    await page.locator('select[name=to]').selectOption('192.168.1.11:31000/udp');
    await page.getByTestId('topology').locator('[data-id="client"]').waitFor();
    const wide = Number(await page.evaluate('document.documentElement.scrollWidth'));
    // the elements that stick out (outside the picture, which scrolls in its own box)
    const beyond = await page
      .locator('body *:not(svg *)')
      .evaluateAll((es) =>
        es
          .filter((e) => e.getBoundingClientRect().right > 390.5 && !e.closest('svg'))
          .map(
            (e) =>
              `${e.tagName.toLowerCase()}${e.getAttribute('name') ? `[name=${e.getAttribute('name')}]` : ''}`,
          ),
      );
    assert.ok(wide <= 390, `page with Services is ${wide}px wide at a 390px viewport: ${beyond.join(' ')}`);
    await shot('18-phone-width-services');
    await page.getByLabel('load a scenario').selectOption('');
    await page.setViewportSize({ width: 1280, height: 800 });
  });
});

/**
 * `podwalk serve --from`: the page imports the served dumps itself (the same importer as the CLI)
 * and walks the imported cluster. The dumps are recorded ones (test/fixtures/collect: the seed
 * cluster's lab in flannel-vxlan, and the same lab with node1's FDB entry for node2's VTEP
 * deleted on the kernel), served through the CLI's own `serve --from`.
 */
describe('web page with node dumps (podwalk serve --from)', () => {
  const fixture = (name: string) => join(REPO, 'test', 'fixtures', 'collect', name);
  const open: { close(): Promise<void> }[] = [];
  let dctx: BrowserContext | undefined;

  /** `podwalk serve --from DIR --port 0` through the CLI; the page loaded from it, without errors */
  async function serveFrom(dir: string): Promise<Page> {
    const out: string[] = [];
    const err: string[] = [];
    let s: Served | undefined;
    const code = await run(['serve', '--from', dir, '--dir', await pageBuild(), '--port', '0'], {
      out: (x) => out.push(x),
      err: (x) => err.push(x),
      readFile: (f) => readFileSync(f, 'utf8'),
      openDir: () => () => undefined,
      readDumps: loadDumps,
      env: {},
      isTTY: false,
      served: (x) => (s = x),
    });
    assert.equal(code, 0, err.join('\n'));
    assert.ok(s, out.join('\n'));
    open.push(s);
    assert.match(out.join('\n'), new RegExp(`serving ${dir} at http://127\\.0\\.0\\.1:`));
    dctx ??= await launch();
    const p = await dctx.newPage();
    p.setDefaultTimeout(20_000);
    const errors: string[] = [];
    p.on('pageerror', (e) => errors.push(String(e)));
    p.on('console', (m) => void (m.type() === 'error' && errors.push(m.text())));
    await p.goto(s.url);
    await p.getByTestId('steps').waitFor();
    assert.deepEqual(errors, [], 'the page loads without errors');
    return p;
  }

  after(async () => {
    await dctx?.close();
    for (const s of open) await s.close();
  });

  it('draws the imported cluster, walks pod-a → pod-c step by step across VXLAN', async () => {
    const p = await serveFrom(fixture('flannel-vxlan'));
    const svg = p.getByTestId('topology');
    for (const id of ['node1', 'node2', 'node3', 'pod-a', 'pod-b', 'pod-c', 'pod-d'])
      assert.equal(await svg.locator(`[data-id="${id}"]`).count(), 1, id);
    for (const id of ['node1|veth-pod-a', 'node1|cni0', 'node1|flannel.1', 'node2|flannel.1'])
      assert.equal(await svg.locator(`[data-id="${id}"]`).count(), 1, id);
    assert.match((await svg.locator('[data-id="pod-c|eth0"]').textContent()) ?? '', /10\.244\.1\.5/);
    // the mode is what the dumps look like, not a choice
    assert.equal(await p.locator('select[name=mode]').isDisabled(), true);
    assert.match(await p.locator('body').innerText(), /Built from node dumps/);

    await p.locator('select[name=from]').selectOption('pod-a');
    await p.locator('select[name=to]').selectOption('pod-c');
    await p.locator('select[name=proto]').selectOption('tcp');
    assert.match(await p.getByTestId('disposition').innerText(), /^delivered to pod-c tcp\/8080$/);
    const steps = p.getByTestId('steps').locator('li');
    const total = await steps.count();
    assert.ok(total > 20, `${total} steps`);
    assert.equal((await position(p)).total, total);
    assert.match(
      await steps.filter({ hasText: 'dev flannel.1 onlink' }).first().innerText(),
      /L3\s+route[\s\S]*main: 10\.244\.1\.0\/24 via 10\.244\.1\.0 dev flannel\.1 onlink/,
    );
    // the FDB entry flanneld wrote on the real node, as the dump has it
    assert.match(
      await steps.filter({ hasText: 'VXLAN vni 1' }).first().innerText(),
      /fdb flannel\.1: 5a:2b:3c:4d:5e:6f dst 192\.168\.1\.11 self permanent/,
    );
    // step through to the end
    await p.locator('select[name=proto]').blur();
    await p.keyboard.press('Home');
    assert.equal((await position(p)).n, 1);
    await p.keyboard.press('ArrowRight');
    assert.equal((await position(p)).n, 2);
    await p.keyboard.press('End');
    const last = await position(p);
    assert.equal(last.n, last.total);
    await p.screenshot({ path: join(ARTIFACTS, '12-dumps-walk.png') });

    // the scenario picker names the dumps; after a scenario they are one choice away again
    const picker = p.getByLabel('load a scenario');
    assert.equal(
      await picker.locator('option:checked').innerText(),
      `the node dumps (${basename(fixture('flannel-vxlan'))})`,
    );
    await picker.selectOption('vxlan-fdb-missing');
    assert.equal(await p.locator('select[name=mode]').isDisabled(), false);
    assert.match(await p.getByTestId('disposition').innerText(), /^DROPPED \(vxlan-fdb-miss\)/);
    await picker.selectOption({ label: 'the node dumps (flannel-vxlan)' });
    assert.equal(await p.locator('select[name=mode]').isDisabled(), true);
    assert.match(await p.getByTestId('disposition').innerText(), /^delivered to pod-c tcp\/8080$/);
    await p.close();
  });

  it("a fault in the dumps (node1's FDB entry for node2's VTEP deleted on the kernel) shows the drop and why", async () => {
    const p = await serveFrom(fixture('fault-vxlan-fdb-deleted'));
    await p.locator('select[name=from]').selectOption('pod-a');
    await p.locator('select[name=to]').selectOption('pod-c');
    await p.locator('select[name=proto]').selectOption('tcp');
    assert.match(
      await p.getByTestId('disposition').innerText(),
      /^DROPPED \(vxlan-fdb-miss\) in node1 at flannel\.1/,
    );
    const drop = p.getByTestId('steps').locator('li[data-kind=drop]');
    assert.equal(await drop.count(), 1);
    assert.match(await drop.innerText(), /node1[\s\S]*flannel\.1/);
    const why = p.getByTestId('why');
    await why.locator('summary').click();
    assert.match(await why.innerText(), /5a:2b:3c:4d:5e:6f/);
    assert.match(await why.innerText(), /tx_dropped on flannel\.1 \+1/);
    await p.keyboard.press('End');
    assert.match(
      (await p.getByTestId('topology').locator('.box.dropped').getAttribute('data-id')) ?? '',
      /^node1/,
    );
    await p.screenshot({ path: join(ARTIFACTS, '13-dumps-fault.png') });
    // doctor on the page, on the imported cluster
    await p.getByRole('button', { name: 'diagnose this flow' }).click();
    const report = await p.getByTestId('doctor').innerText();
    assert.match(report, /^why: vxlan-fdb-miss in node1 at flannel\.1$/m);
    assert.match(report, /✗ vxlan-route-without-fdb/);
    await p.close();
  });
});
