;;; emacs_session.el --- Driven by test_emacs.py  -*- lexical-binding: t -*-
;; emacs --batch -Q -l emacs_session.el SETTINGS.json OUT.json
;; Uses the documented client (clients/emacs) the way a user's init file would, and writes what
;; came back to OUT.json.

(require 'json)
(let* ((settings (json-parse-string (with-temp-buffer
                                      (insert-file-contents (nth 0 command-line-args-left))
                                      (buffer-string))
                                    :object-type 'plist :array-type 'list))
       (out-file (nth 1 command-line-args-left))
       (progress nil)
       (out nil)
       (run nil))
  (setq command-line-args-left nil)
  (add-to-list 'load-path (plist-get settings :client_dir))
  (require 'llama-agent)
  (setq llama-agent-command (plist-get settings :cmd))
  (setq process-environment (append (plist-get settings :cmd_env) process-environment))
  (setq default-directory (file-name-as-directory (plist-get settings :root_dir)))
  (add-hook 'llama-agent-progress-functions (lambda (value) (push value progress)))
  (cl-flet ((try (method params)
              (condition-case err
                  (list :result (llama-agent-request method params))
                (jsonrpc-error
                 (list :error (list :code (alist-get 'jsonrpc-error-code (cddr err))
                                    :message (alist-get 'jsonrpc-error-message (cddr err))))))))
    (setq out (list :tools (try 'tools/list (make-hash-table))
                    :listed (llama-agent-tools)
                    :echo (try 'tools/invoke (list :name "echo" :arguments (list :value "Something to echo")))
                    :no_arguments (try 'tools/invoke (list :name "echo" :arguments nil))
                    :bad_params (try 'agent/run (list :prompt 42))
                    :uri (llama-agent--file-uri "/tmp/my project/"))))
  (llama-agent-run (plist-get settings :prompt) (lambda (result) (setq run result)))
  (with-timeout (60 nil)
    (while (not run) (accept-process-output nil 0.05)))
  (setq out (append out (list :run run
                              :progress (vconcat (reverse progress))
                              :exit_code (llama-agent-stop))))
  (with-temp-file out-file (insert (json-serialize out :null-object nil :false-object :json-false))))
