// What the browser sends for an upload: every file under its path relative to the chosen folder
// ("my-model/config.json"), so the server can rebuild the folder. The generated form serializer would send
// only the base name (File.name), so uploads use this serializer instead.

/** A file's path inside the folder the person picked, or its name for a single file (a .zip). */
export function relativePath(file: File): string {
  return file.webkitRelativePath || file.name;
}

/** Files a model never needs and a folder often has: anything under a hidden folder (.git) or hidden (.DS_Store). */
export function isHidden(file: File): boolean {
  return relativePath(file)
    .split("/")
    .some((part) => part.startsWith("."));
}

export type UploadSelection = {
  kind: "folder" | "zip";
  files: File[];
  /** Hidden files left out of a folder. */
  skipped: number;
  /** The folder's or the zip's name: the model's default name on the server. */
  name: string;
  bytes: number;
};

export function selectionFrom(kind: UploadSelection["kind"], list: FileList | File[] | null): UploadSelection | null {
  const all = Array.from(list ?? []);
  if (all.length === 0) return null;
  const files = kind === "folder" ? all.filter((file) => !isHidden(file)) : all.slice(0, 1);
  const first = files[0] ? relativePath(files[0]) : relativePath(all[0]);
  return {
    kind,
    files,
    skipped: all.length - files.length,
    name: kind === "folder" ? first.split("/")[0] : first.replace(/\.zip$/i, ""),
    bytes: files.reduce((sum, file) => sum + file.size, 0),
  };
}

/** The multipart body of POST /model/upload: `files` repeated, each named by its relative path; `name` if set. */
export function uploadFormData(body: unknown): FormData {
  const { files = [], name } = (body ?? {}) as { files?: Array<Blob | File> | null; name?: string | null };
  const data = new FormData();
  for (const file of files ?? []) {
    data.append("files", file, file instanceof File ? relativePath(file) : "upload");
  }
  if (name) data.append("name", name);
  return data;
}
