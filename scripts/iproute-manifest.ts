/**
 * The format of test/golden/iproute/manifest.json: written by scripts/record-iproute-goldens.ts
 * (on the real tools in the lab), read by test/iproute.test.ts.
 */

/** one command run in one namespace; its stdout is in `file` */
export interface RecordedCommand {
  netns: string;
  argv: string[];
  file: string;
  code: number;
  stderr: string;
  /** "dynamic": the timer-sensitive snapshot taken right after the ping; "static": the rest */
  phase: 'dynamic' | 'static';
}

/** one mutating command and what the show commands printed after it */
export interface RecordedMutation {
  netns: string;
  argv: string[];
  code: number;
  stdout: string;
  stderr: string;
  after: { netns: string; argv: string[]; stdout: string }[];
}

export interface ModeRecord {
  /** ping pod-a → pod-c, which puts traffic on the counters */
  ping: string;
  dynamicMs: number;
  /** `ip -s -j link` of every namespace before the ping (the kernel's own start-up traffic) */
  baseline: Record<
    string,
    { ifname: string; stats64: { rx: Record<string, number>; tx: Record<string, number> } }[]
  >;
  /** each namespace's nsid table: peer namespace → nsid */
  nsids: Record<string, Record<string, string>>;
  commands: RecordedCommand[];
  mutations: RecordedMutation[];
}

export interface Manifest {
  recorded: string;
  kernel: string;
  ip: string;
  bridge: string;
  labPrefix: string;
  modes: Record<string, ModeRecord>;
}
