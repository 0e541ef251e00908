// The status bar item: the live adapter, and training progress while a job runs. Click = status.

export interface StatusItemLike {
  text: string;
  tooltip?: unknown;
  command?: unknown;
  show(): void;
  dispose(): void;
}

export interface Training {
  job?: number | string | null;
  step?: number | null;
  total?: number | null;
  loss?: number | null;
}

export interface StatusNotice {
  adapter?: string | null;
  model?: string | null;
  training?: Training | null;
}

export const SHOW_STATUS_COMMAND = "penwright.showStatus";

export class StatusBar {
  constructor(private readonly item: StatusItemLike) {
    item.command = SHOW_STATUS_COMMAND;
    this.set("$(loading~spin) Penwright", "Starting the Penwright language server");
    item.show();
  }

  update(notice: StatusNotice): void {
    const adapter = notice.adapter || "base model";
    const t = notice.training;
    if (t) {
      const pct = t.step != null && t.total ? Math.floor((100 * t.step) / t.total) : null;
      const detail = pct == null ? "starting" : `${pct}%`;
      this.set(`$(sync~spin) Penwright: training ${detail}`, `Training job ${t.job ?? "?"}: step ${t.step ?? 0}/${t.total ?? "?"}. Live: ${adapter}`);
    } else {
      const model = notice.model && notice.model !== "penwright" ? ` (${notice.model})` : "";
      this.set(`$(feedback) Penwright ${adapter}${model}`, `Live adapter: ${adapter}. Click for status.`);
    }
  }

  stopped(reason: string): void {
    this.set("$(error) Penwright", reason);
  }

  private set(text: string, tooltip: string): void {
    this.item.text = text;
    this.item.tooltip = tooltip;
  }

  dispose(): void {
    this.item.dispose();
  }
}
