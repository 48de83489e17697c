;;; llama-agent.el --- Call llama-agent's methods from Emacs  -*- lexical-binding: t -*-

;; Version: 0.1.0
;; Package-Requires: ((emacs "28.1"))

;;; Commentary:

;; The daemon speaks LSP's lifecycle over stdio, so any JSON-RPC client can start it.  This one
;; uses Emacs' own `jsonrpc' library rather than eglot: eglot gives each buffer one server, so
;; registering the daemon for a major mode would take that mode's language server away.  The
;; daemon reads no documents, so it is started for a project and attached to no buffer.
;;
;;   (add-to-list 'load-path "/path/to/llama-agent/clients/emacs")
;;   (require 'llama-agent)
;;   (setq llama-agent-command '("/path/to/llama-agent/.venv/bin/llama-agent" "serve"))
;;
;;   M-x llama-agent-run     agent/run; progress in the echo area, the answer in *llama-agent*
;;   M-x llama-agent-tools   tools/list
;;   M-x llama-agent-stop    shutdown and exit
;;
;; From Lisp: (llama-agent-request METHOD PARAMS) for any of its methods, PARAMS a plist.

;;; Code:

(require 'cl-lib)
(require 'jsonrpc)
(require 'project)
(require 'url-util)

(defgroup llama-agent nil
  "The llama-agent daemon: a local model with sandboxed WebAssembly tools."
  :group 'tools)

(defcustom llama-agent-command '("llama-agent" "serve")
  "The daemon's command line."
  :type '(repeat string))

(defcustom llama-agent-run-params nil
  "`agent/run' params besides the prompt, a plist.
For instance (:maxSteps 3 :tools [\"calc\"])."
  :type 'plist)

(defcustom llama-agent-timeout 600
  "Seconds to wait for an answer to a request."
  :type 'integer)

(defvar llama-agent-progress-functions nil
  "Functions called with the value of each `$/progress' notification (a plist).")

(defvar llama-agent--connection nil)
(defvar llama-agent--process nil)
(defvar llama-agent--runs 0)

(defun llama-agent--root ()
  "The folder granted to the workspace tools.
The current project's root, else the current directory."
  (expand-file-name (let ((project (project-current nil)))
                      (if project (project-root project) default-directory))))

(defun llama-agent--start-process ()
  (setq llama-agent--process
        (make-process :name "llama-agent"
                      :command llama-agent-command
                      :connection-type 'pipe
                      :coding 'utf-8-emacs-unix
                      :noquery t
                      ;; `jsonrpc-process-connection' reads the daemon's log from this buffer.
                      :stderr (get-buffer-create "*llama-agent stderr*"))))

(defun llama-agent--file-uri (directory)
  (concat "file://" (mapconcat #'url-hexify-string
                               (split-string (directory-file-name directory) "/") "/")))

(defun llama-agent--on-notification (_connection method params)
  (pcase method
    ('$/progress
     (let ((value (plist-get params :value)))
       (run-hook-with-args 'llama-agent-progress-functions value)
       (when-let ((text (or (plist-get value :message) (plist-get value :title))))
         (message "llama-agent: %s" (string-trim text)))))
    ('tools/didChange (message "llama-agent: the tools changed"))
    ('window/logMessage (message "%s" (plist-get params :message)))))

(defun llama-agent--on-request (_connection method params)
  (pcase method
    ('window/workDoneProgress/create nil)
    ('window/showMessageRequest
     (let* ((titles (mapcar (lambda (action) (plist-get action :title)) (plist-get params :actions)))
            (choice (completing-read (concat (plist-get params :message) " ") titles nil t)))
       (list :title choice)))
    (_ (jsonrpc-error :code -32601 :message (format "llama-agent.el does not handle %s" method)))))

(defun llama-agent-connection ()
  "The daemon's connection, started (and initialized) on first use."
  (unless (and llama-agent--connection (jsonrpc-running-p llama-agent--connection))
    (let ((connection (make-instance 'jsonrpc-process-connection
                                     :name "llama-agent"
                                     :process #'llama-agent--start-process
                                     :notification-dispatcher #'llama-agent--on-notification
                                     :request-dispatcher #'llama-agent--on-request))
          (root (llama-agent--root)))
      (jsonrpc-request connection :initialize
                       (list :processId (emacs-pid)
                             :rootUri (llama-agent--file-uri root)
                             :clientInfo (list :name "llama-agent.el")
                             :capabilities (list :window (list :workDoneProgress t)))
                       :timeout llama-agent-timeout)
      (jsonrpc-notify connection :initialized (make-hash-table))
      (setq llama-agent--connection connection)))
  llama-agent--connection)

(defun llama-agent-request (method params)
  "Send METHOD (a symbol such as `tools/list') with PARAMS (a plist).
Return the result, or signal `jsonrpc-error'."
  (jsonrpc-request (llama-agent-connection) method params :timeout llama-agent-timeout))

(defun llama-agent--show (text)
  (with-current-buffer (get-buffer-create "*llama-agent*")
    (let ((inhibit-read-only t))
      (goto-char (point-max))
      (insert text "\n\n")))
  (message "%s" text))

(defun llama-agent-run (prompt &optional callback)
  "Ask the agent PROMPT (agent/run) without blocking Emacs.
The answer goes to the *llama-agent* buffer, or to CALLBACK,
which is called with the result (a plist)."
  (interactive "sAsk llama-agent: ")
  (setq llama-agent--runs (1+ llama-agent--runs))
  (let ((params (append (list :prompt prompt
                              :workDoneToken (format "llama-agent.el-%d" llama-agent--runs))
                        llama-agent-run-params)))
    (jsonrpc-async-request
     (llama-agent-connection) 'agent/run params
     :timeout llama-agent-timeout
     :success-fn (or callback
                     (lambda (result)
                       (llama-agent--show (format "> %s\n%s  [%s]" prompt (plist-get result :answer)
                                                  (plist-get result :stopReason)))))
     :error-fn (cl-function (lambda (&key message &allow-other-keys)
                              (llama-agent--show (format "> %s\nllama-agent: %s" prompt message)))))))

(defun llama-agent-tools ()
  "List the daemon's tools (tools/list)."
  (interactive)
  (let ((result (llama-agent-request 'tools/list nil)))
    (message "llama-agent tools: %s"
             (mapconcat (lambda (tool) (plist-get tool :name)) (plist-get result :tools) ", "))
    result))

(defun llama-agent-stop ()
  "Stop the daemon (shutdown, then exit); return its exit code."
  (interactive)
  (when (and llama-agent--connection (jsonrpc-running-p llama-agent--connection))
    (let ((connection llama-agent--connection)
          (process llama-agent--process))
      (jsonrpc-request connection :shutdown nil :timeout llama-agent-timeout)
      (jsonrpc-notify connection :exit nil)
      (with-timeout (10 (delete-process process))
        (while (process-live-p process)
          (accept-process-output process 0.1)))
      (setq llama-agent--connection nil)
      (process-exit-status process))))

(provide 'llama-agent)
;;; llama-agent.el ends here
