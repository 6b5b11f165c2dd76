/**
 * Minimal types for fuse-native 2.2.6 (no @types exist), as patched by
 * patches/fuse-native+2.2.6.patch. Only what Stratus uses is declared.
 *
 * Callback convention: the first argument is the result code, 0 or a negative errno
 * (`Fuse.ENOENT` is -2). It must be a number: anything else throws inside the binding and
 * leaves the kernel request hanging. read/write answer the byte count in that slot instead.
 */
declare module 'fuse-native' {
  namespace Fuse {
    /** Names of the errno constants on the class (negative Linux values, e.g. Fuse.ENOENT === -2). */
    type ErrnoName =
      | 'EPERM' | 'ENOENT' | 'ESRCH' | 'EINTR' | 'EIO' | 'ENXIO' | 'E2BIG' | 'ENOEXEC' | 'EBADF'
      | 'ECHILD' | 'EAGAIN' | 'ENOMEM' | 'EACCES' | 'EFAULT' | 'ENOTBLK' | 'EBUSY' | 'EEXIST'
      | 'EXDEV' | 'ENODEV' | 'ENOTDIR' | 'EISDIR' | 'EINVAL' | 'ENFILE' | 'EMFILE' | 'ENOTTY'
      | 'ETXTBSY' | 'EFBIG' | 'ENOSPC' | 'ESPIPE' | 'EROFS' | 'EMLINK' | 'EPIPE' | 'EDOM' | 'ERANGE'
      | 'EDEADLK' | 'ENAMETOOLONG' | 'ENOLCK' | 'ENOSYS' | 'ENOTEMPTY' | 'ELOOP' | 'EWOULDBLOCK'
      | 'ENOMSG' | 'EIDRM' | 'ECHRNG' | 'EL2NSYNC' | 'EL3HLT' | 'EL3RST' | 'ELNRNG' | 'EUNATCH'
      | 'ENOCSI' | 'EL2HLT' | 'EBADE' | 'EBADR' | 'EXFULL' | 'ENOANO' | 'EBADRQC' | 'EBADSLT'
      | 'EDEADLOCK' | 'EBFONT' | 'ENOSTR' | 'ENODATA' | 'ETIME' | 'ENOSR' | 'ENONET' | 'ENOPKG'
      | 'EREMOTE' | 'ENOLINK' | 'EADV' | 'ESRMNT' | 'ECOMM' | 'EPROTO' | 'EMULTIHOP' | 'EDOTDOT'
      | 'EBADMSG' | 'EOVERFLOW' | 'ENOTUNIQ' | 'EBADFD' | 'EREMCHG' | 'ELIBACC' | 'ELIBBAD'
      | 'ELIBSCN' | 'ELIBMAX' | 'ELIBEXEC' | 'EILSEQ' | 'ERESTART' | 'ESTRPIPE' | 'EUSERS'
      | 'ENOTSOCK' | 'EDESTADDRREQ' | 'EMSGSIZE' | 'EPROTOTYPE' | 'ENOPROTOOPT' | 'EPROTONOSUPPORT'
      | 'ESOCKTNOSUPPORT' | 'EOPNOTSUPP' | 'EPFNOSUPPORT' | 'EAFNOSUPPORT' | 'EADDRINUSE'
      | 'EADDRNOTAVAIL' | 'ENETDOWN' | 'ENETUNREACH' | 'ENETRESET' | 'ECONNABORTED' | 'ECONNRESET'
      | 'ENOBUFS' | 'EISCONN' | 'ENOTCONN' | 'ESHUTDOWN' | 'ETOOMANYREFS' | 'ETIMEDOUT'
      | 'ECONNREFUSED' | 'EHOSTDOWN' | 'EHOSTUNREACH' | 'EALREADY' | 'EINPROGRESS' | 'ESTALE'
      | 'EUCLEAN' | 'ENOTNAM' | 'ENAVAIL' | 'EISNAM' | 'EREMOTEIO' | 'EDQUOT' | 'ENOMEDIUM'
      | 'EMEDIUMTYPE';

    /** What getattr answers. Times are Dates or milliseconds since 1970; missing fields are 0 (nlink 1, times now). */
    interface Stat {
      mode?: number;
      uid?: number;
      gid?: number;
      size?: number;
      dev?: number;
      nlink?: number;
      ino?: number;
      rdev?: number;
      blksize?: number;
      blocks?: number;
      atime?: Date | number;
      mtime?: Date | number;
      ctime?: Date | number;
    }

    /** What statfs answers (uint32 each). */
    interface Statfs {
      bsize?: number;
      frsize?: number;
      blocks?: number;
      bfree?: number;
      bavail?: number;
      files?: number;
      ffree?: number;
      favail?: number;
      fsid?: number;
      flag?: number;
      namemax?: number;
    }

    /** Answers with 0 or a negative errno. */
    type Callback = (code: number) => void;
    type StatCallback = (code: number, stat?: Stat) => void;
    type StatfsCallback = (code: number, statfs?: Statfs) => void;
    /** names and, optionally, a Stat for each (same order): the kernel then needs no lookup per entry. */
    type ReaddirCallback = (code: number, names?: string[], stats?: Stat[]) => void;
    /** Answers with 0 and a file handle (a positive int32 kept in fuse_file_info.fh), or a negative errno. */
    type HandleCallback = (code: number, fd?: number) => void;
    /** Answers with the number of bytes read/written (0 at EOF), or a negative errno. */
    type CountCallback = (bytesOrErrno: number) => void;

    /**
     * The callbacks. Method syntax on purpose (bivariant parameters), so a plain record of
     * functions fits. Paths are absolute inside the mount ("/", "/dir/file").
     */
    interface Operations {
      init?(cb: Callback): void;
      access?(path: string, mode: number, cb: Callback): void;
      statfs?(path: string, cb: StatfsCallback): void;
      getattr?(path: string, cb: StatCallback): void;
      /** 2.2.6 calls ops.getattr(path, cb) for it; declaring fgetattr only switches it on. */
      fgetattr?(path: string, fd: number, cb: StatCallback): void;
      flush?(path: string, fd: number, cb: Callback): void;
      /** Note the order: datasync (0 or 1) before the handle. */
      fsync?(path: string, datasync: number, fd: number, cb: Callback): void;
      fsyncdir?(path: string, datasync: number, fd: number, cb: Callback): void;
      readdir?(path: string, cb: ReaddirCallback): void;
      truncate?(path: string, size: number, cb: Callback): void;
      ftruncate?(path: string, fd: number, size: number, cb: Callback): void;
      /**
       * Times in milliseconds since 1970 (before 1970: 0). null: leave that time unchanged
       * (UTIME_OMIT, e.g. `touch -m` passes atime null). "Now" (UTIME_NOW, plain `touch`)
       * arrives as the current time.
       */
      utimens?(path: string, atime: number | null, mtime: number | null, cb: Callback): void;
      readlink?(path: string, cb: (code: number, linkname?: string) => void): void;
      chown?(path: string, uid: number, gid: number, cb: Callback): void;
      chmod?(path: string, mode: number, cb: Callback): void;
      mknod?(path: string, mode: number, dev: number, cb: Callback): void;
      /** flags: the open(2) flags (O_ACCMODE, O_APPEND, O_TRUNC...). */
      open?(path: string, flags: number, cb: HandleCallback): void;
      /** 2.2.6 passes fuse_file_info.fh (0) where flags would be. */
      opendir?(path: string, flags: number, cb: HandleCallback): void;
      /** buf is only valid until cb is called (the binding detaches it). */
      read?(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: CountCallback): void;
      /** buf is only valid until cb is called (the binding detaches it). */
      write?(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: CountCallback): void;
      release?(path: string, fd: number, cb: Callback): void;
      releasedir?(path: string, fd: number, cb: Callback): void;
      create?(path: string, mode: number, cb: HandleCallback): void;
      unlink?(path: string, cb: Callback): void;
      rename?(src: string, dest: string, cb: Callback): void;
      link?(src: string, dest: string, cb: Callback): void;
      symlink?(target: string, path: string, cb: Callback): void;
      mkdir?(path: string, mode: number, cb: Callback): void;
      rmdir?(path: string, cb: Callback): void;
    }

    /** Constructor options fuse-native reads itself (most turn into -o options; falsy ones are dropped). */
    interface Options {
      /** Per-operation timeout in ms (default 15000: the op then fails with ETIMEDOUT); false: none. */
      timeout?: number | false | ({ default?: number | false } & Partial<Record<string, number | false>>);
      /** Unmount a dead mount at the mountpoint first. */
      force?: boolean;
      /** Create the mountpoint if it is missing. */
      mkdir?: boolean;
      debug?: boolean;
      allowOther?: boolean;
      allowRoot?: boolean;
      autoUnmount?: boolean;
      defaultPermissions?: boolean;
      maxRead?: number;
      fsname?: string;
      subtype?: string;
      kernelCache?: boolean;
      autoCache?: boolean;
      umask?: number;
      uid?: number;
      gid?: number;
      entryTimeout?: number;
      attrTimeout?: number;
      acAttrTimeout?: number;
      noforget?: boolean;
      remember?: number;
    }

    /** A mount (one per Fuse object). */
    interface Instance {
      /** The absolute mountpoint. */
      readonly mnt: string;
      readonly ops: Operations;
      readonly opts: Options;
      /** The per-operation timeout in force: 0 when off. */
      readonly timeout: number | Record<string, number | false>;
      /** Mounts; cb runs once the kernel's INIT arrived (the mount answers from then on). */
      mount(cb: (err: Error | null) => void): void;
      /** Unmounts (static Fuse.unmount, then releases the native side). */
      unmount(cb: (err: Error | null) => void): void;
      /** The raw mount option string handed to libfuse ("-oa,b=c" or ""); subclasses may override it. */
      _fuseOptions(): string;
      /** Fuse.<CODE> for an errno name, -1 when unknown. */
      errno(code: string): number;
    }

    interface Constructor extends Readonly<Record<ErrnoName, number>> {
      new (mnt: string, ops: Operations, opts?: Options): Instance;
      readonly prototype: Instance;
      /** Lazy unmount of mnt by `fusermount -uz` (a shell command line). */
      unmount(mnt: string, cb: (err: Error | null) => void): void;
      isConfigured(cb: (err: Error | null, configured?: boolean) => void): void;
      /** Added by the Stratus patch: 1 or more when the loaded addon is the patched build, 0 otherwise. */
      readonly STRATUS_PATCH: number;
    }
  }

  const Fuse: Fuse.Constructor;
  export = Fuse;
}
